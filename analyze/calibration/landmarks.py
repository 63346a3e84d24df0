"""Depth landmarks of the per-layer curves (methods.md section 3).

- rise layer: the first layer where accuracy >= 1/K + 0.05 (K: mean number of options), counted
  only when the last layer is above that threshold too — a model that ends near chance has no
  rise, whatever noise crosses the line on the way (``first_crossing_layer`` keeps that layer);
- plateau layer: the first layer from which accuracy stays within 0.01 of the last layer's;
- peak-miscalibration layer: the layer of largest ECE at or after the rise;
- correction phase: the layers (peak, last], with ΔECE = ECE(last) - ECE(peak) and
  Δconfidence = mean confidence(last) - mean confidence(peak), each with a paired bootstrap 95%
  interval: every resample weights the same examples at both layers, and the resamples are those
  of ``per_layer_bootstrap`` with the same seed (:mod:`analyze.calibration.paired`). ``significant``: the ΔECE interval excludes 0.

A landmark that is not reached is None and ``notes`` says why; no layer is ever made up.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analyze.calibration.paired import paired_term_deltas

RISE_MARGIN = 0.05
PLATEAU_TOLERANCE = 0.01

DEFINITIONS = {
    "rise_layer": "first layer where accuracy >= 1/K + 0.05, K = mean number of answer options; "
    "None when the last layer's accuracy is below that threshold (the model ends near chance)",
    "first_crossing_layer": "first layer where accuracy >= 1/K + 0.05, whatever comes after",
    "rise_layer_sustained": "first layer from which accuracy stays >= 1/K + 0.05 to the end",
    "plateau_layer": "first layer from which accuracy stays within 0.01 of the last layer's "
    "(reported only when accuracy rises)",
    "peak_miscalibration_layer": "layer of largest ECE at or after the rise layer",
    "correction_phase": "layers (start, end]: start = peak-miscalibration layer (excluded), end = "
    "last layer; delta_ece = ECE(end) - ECE(start), delta_confidence = mean confidence(end) - "
    "mean confidence(start), negative = the model becomes less miscalibrated / less confident; "
    "*_lo/*_hi: paired percentile bootstrap interval over examples (same resamples at both "
    "layers); significant: the delta_ece interval excludes 0",
    "layers": "layer values are depths of the store: 0 = embedding output, l = output of block l",
}


def rise_index(accuracy: ArrayLike, k_mean: float, margin: float = RISE_MARGIN) -> int | None:
    """Index of the first accuracy >= 1/k_mean + margin; accuracy (L,). None when never."""
    hit = np.flatnonzero(np.asarray(accuracy, np.float64) >= 1.0 / k_mean + margin)
    return int(hit[0]) if hit.size else None


def sustained_index(accuracy: ArrayLike, k_mean: float, margin: float = RISE_MARGIN) -> int | None:
    """Index of the first layer from which accuracy stays >= 1/k_mean + margin; None if none."""
    below = np.flatnonzero(np.asarray(accuracy, np.float64) < 1.0 / k_mean + margin)
    if below.size == 0:
        return 0
    return None if below[-1] == len(np.asarray(accuracy)) - 1 else int(below[-1]) + 1


def plateau_index(accuracy: ArrayLike, tol: float = PLATEAU_TOLERANCE) -> int:
    """Index of the first layer from which every |accuracy - accuracy[-1]| <= tol; (L,) -> int."""
    acc = np.asarray(accuracy, np.float64)
    off = np.abs(acc - acc[-1]) > tol + 1e-12  # 1e-12: accuracy is a ratio of counts
    bad = np.flatnonzero(off)
    return int(bad[-1]) + 1 if bad.size else 0


def layer_deltas(
    conf: NDArray[np.float64],
    correct: NDArray[np.float64],
    i: int,
    j: int,
    *,
    n_bins: int = 10,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    weights: NDArray[Any] | None = None,
) -> dict[str, float]:
    """ECE and mean-confidence differences from layer i to layer j with paired intervals.

    ``conf``, ``correct``: (L, n). Returns delta_ece = ECE[j] - ECE[i] and delta_confidence with
    their (alpha/2, 1 - alpha/2) percentile intervals over ``n_boot`` resamples of the examples
    (:func:`~analyze.calibration.paired.paired_term_deltas`: each resample weights the same
    examples at both layers). ``weights``: the (n_boot, n) draw counts of
    ``draw_weights(n, n_boot, seed)`` when the caller has them already (else drawn).
    """
    base = {"accuracy": correct[[i]], "mean_confidence": conf[[i]]}
    new = {"accuracy": correct[[j]], "mean_confidence": conf[[j]]}
    d = paired_term_deltas(
        base, new, n_bins=n_bins, n_boot=n_boot, seed=seed, alpha=alpha, weights=weights
    )
    out: dict[str, float] = {}
    for name, key in (("delta_ece", "ece"), ("delta_confidence", "mean_confidence")):
        for suffix in ("", "_lo", "_hi"):
            out[name + suffix] = float(d[key][f"delta{suffix}"][0])
    return out


def depth_landmarks(
    layers: ArrayLike,
    accuracy: ArrayLike,
    ece: ArrayLike,
    conf: NDArray[np.float64],
    correct: NDArray[np.float64],
    k_mean: float,
    *,
    n_bins: int = 10,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    weights: NDArray[Any] | None = None,
) -> dict[str, Any]:
    """All landmarks as the JSON-able dict of ``AnalysisResult.landmarks``.

    ``layers``, ``accuracy``, ``ece``: (L,) over the analysed layers, the last one being the
    model's last depth; ``conf``, ``correct``: (L, n) per-example confidence and correctness;
    ``k_mean``: mean number of options; ``weights``: see :func:`layer_deltas`. Layer values in the
    result come from ``layers``.
    """
    lay = [int(x) for x in np.asarray(layers)]
    acc = np.asarray(accuracy, np.float64)
    ec = np.asarray(ece, np.float64)
    threshold = 1.0 / k_mean + RISE_MARGIN
    out: dict[str, Any] = {
        "rise_layer": None,
        "first_crossing_layer": None,
        "rise_layer_sustained": None,
        "plateau_layer": None,
        "peak_miscalibration_layer": None,
        "correction_phase": None,
        "chance_accuracy": 1.0 / k_mean,
        "rise_threshold": threshold,
        "notes": [],
        "definitions": dict(DEFINITIONS),
    }
    notes: list[str] = out["notes"]
    rise = rise_index(acc, k_mean)
    sustained = sustained_index(acc, k_mean)
    out["first_crossing_layer"] = None if rise is None else lay[rise]
    out["rise_layer_sustained"] = None if sustained is None else lay[sustained]
    if rise is None or acc[-1] < threshold:
        seen = (
            f"never reaches 1/K + {RISE_MARGIN} = {threshold:.3f} (best {acc.max():.3f} at "
            f"layer {lay[int(acc.argmax())]})"
            if rise is None
            else f"first reaches 1/K + {RISE_MARGIN} = {threshold:.3f} at layer {lay[rise]} but "
            f"ends at {acc[-1]:.3f}, below it"
        )
        notes.append(
            f"accuracy {seen}: the model stays near chance, so no rise, plateau, "
            "peak-miscalibration layer or correction phase is reported"
        )
        return out
    out["rise_layer"] = lay[rise]
    out["plateau_layer"] = lay[plateau_index(acc)]
    peak = rise + int(np.argmax(ec[rise:]))
    out["peak_miscalibration_layer"] = lay[peak]
    last = len(lay) - 1
    if peak == last:
        notes.append("ECE is largest at the last layer: there is no correction phase")
        return out
    d = layer_deltas(
        conf,
        correct,
        peak,
        last,
        n_bins=n_bins,
        n_boot=n_boot,
        seed=seed,
        alpha=alpha,
        weights=weights,
    )
    significant = d["delta_ece_lo"] > 0 or d["delta_ece_hi"] < 0
    out["correction_phase"] = {
        "start": lay[peak],
        "end": lay[last],
        "n_layers": last - peak,
        "ece_start": float(ec[peak]),
        "ece_end": float(ec[last]),
        **d,
        "significant": bool(significant),
        "significant_confidence": bool(
            d["delta_confidence_lo"] > 0 or d["delta_confidence_hi"] < 0
        ),
    }
    if not significant:
        notes.append(
            f"the ECE change over the correction phase ({d['delta_ece']:+.3f}, 95% interval "
            f"[{d['delta_ece_lo']:+.3f}, {d['delta_ece_hi']:+.3f}]) is not distinguishable from 0"
        )
    return out
