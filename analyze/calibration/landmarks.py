"""Depth landmarks of the per-layer curves (methods.md section 3).

- chance: the mean over examples of 1 / K_i (:func:`~analyze.calibration.chance_accuracy`);
- first crossing: the first layer whose accuracy interval (bootstrap 95%, lower bound) lies
  above chance; rise layer: the first layer from which that lower bound stays above chance to
  the last layer — a model whose last layer is not clearly above chance has no rise, whatever
  noise crosses on the way (``first_crossing_layer`` keeps that layer);
- plateau layer: the first layer from which accuracy stays within 0.01 of the last layer's (or
  within 1.96 standard errors of the paired difference, where that is larger: 0.01 is below the
  noise of a few hundred examples);
- peak-miscalibration layer and correction phase, without selection bias: the examples are split
  per subject, seeded, into a "selection" half and a "test" half (:data:`LANDMARK_STREAM`). On
  the selection half alone: its own plateau (the search start; the tolerance 0.01 widened to the
  noise of the paired accuracy difference where that is larger, :func:`plateau_tolerance`) and
  the layer of largest ECE from there on (the peak). Searching from the plateau rather than the
  rise keeps the peak out of the layers where accuracy is still climbing, where a gap that
  closes is accuracy catching up with confidence, not a correction. On the test half alone: ECE at the peak and at the last layer, ΔECE,
  Δconfidence and their paired bootstrap 95% intervals (every resample weights the same
  examples at both layers, :mod:`analyze.calibration.paired`). The peak is chosen by the data,
  so testing it on the examples that chose it would bias ΔECE downwards (the maximum of noisy
  ECEs is above its mean); the two halves are independent, so the test half sees a fixed layer.
  ``significant``: the ΔECE interval excludes 0. ``tests/analyze/calibration/test_selection.py``
  simulates the null (flat late calibration) to check the false-positive rate.

A landmark that is not reached is None and ``notes`` says why; no layer is ever made up.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analyze.calibration._binning import bin_sums, ece_from_sums
from analyze.calibration._bootstrap import draw_weights
from analyze.calibration.paired import paired_term_deltas, weight_blocks
from analyze.calibration.splits import LANDMARK_STREAM, stratified_split

PLATEAU_TOLERANCE = 0.01
SELECTION_FRACTION = 0.5  # share of each subject's examples in the selection half

DEFINITIONS = {
    "chance_accuracy": "mean over the examples of 1/K_i, K_i = number of answer options of "
    "example i (the accuracy of a uniform guess; not 1/mean(K))",
    "rise_threshold": "the value accuracy's lower 95% bound must exceed: chance_accuracy",
    "rise_layer": "first layer from which the lower bound of accuracy's bootstrap 95% interval "
    "stays above chance to the last layer (all analysed examples); None when the last layer's "
    "lower bound is not above chance (the model ends near chance)",
    "first_crossing_layer": "first layer whose accuracy lower 95% bound is above chance, "
    "whatever comes after",
    "rise_layer_sustained": "the same layer as rise_layer (kept for older readers)",
    "plateau_layer": "first layer from which accuracy stays within 0.01 of the last layer's, "
    "or within 1.96 standard errors of the paired accuracy difference where that is larger "
    "(all analysed examples; reported only when accuracy rises)",
    "peak_miscalibration_layer": "layer of largest ECE at or after the search start, both "
    "computed on the selection half only; search start = the plateau of that half: the first "
    "layer from which its accuracy stays within 0.01 of its last layer's, or within 1.96 "
    "standard errors of the paired difference where that is larger (0.01 can be below the "
    "noise of half the examples)",
    "correction_phase": "layers (start, end]: start = peak-miscalibration layer (excluded), end = "
    "last layer. Computed on the test half only (the examples that did not choose the peak): "
    "ece_start, ece_end, delta_ece = ECE(end) - ECE(start), delta_confidence = mean "
    "confidence(end) - mean confidence(start), negative = the model becomes less miscalibrated "
    "/ less confident; *_lo/*_hi: paired percentile bootstrap 95% interval over the test "
    "examples (same resamples at both layers); significant: the delta_ece interval excludes 0; "
    "significant_confidence: the delta_confidence interval excludes 0; the analysis adds "
    "delta_nll and delta_brier (NLL and multi-class Brier, the primary endpoints: proper "
    "scores) with their paired intervals, nll_/brier_start/end, and ece_floor_start/end (the "
    "ECE a calibrated predictor would show on the test half at each end)",
    "selection_split": "per subject, seeded (stratified_split, stream LANDMARK_STREAM): the "
    "selection half chooses the peak, the test half measures the correction phase",
    "layers": "layer values are depths of the store: 0 = embedding output, l = output of block l",
}


def first_above(lower: ArrayLike, chance: float) -> int | None:
    """Index of the first lower bound > chance; ``lower`` (L,). None when none is."""
    hit = np.flatnonzero(np.asarray(lower, np.float64) > chance)
    return int(hit[0]) if hit.size else None


def stays_above(lower: ArrayLike, chance: float) -> int | None:
    """Index of the first layer from which every lower bound is > chance; None when the last
    one is not (nan counts as not above)."""
    lo = np.asarray(lower, np.float64)
    below = np.flatnonzero(~(lo > chance))
    if below.size == 0:
        return 0
    return None if below[-1] == lo.size - 1 else int(below[-1]) + 1


def plateau_index(accuracy: ArrayLike, tol: ArrayLike = PLATEAU_TOLERANCE) -> int:
    """Index of the first layer from which every |accuracy - accuracy[-1]| <= tol; (L,) -> int.
    ``tol``: a number, or (L,) one per layer (:func:`plateau_tolerance`)."""
    acc = np.asarray(accuracy, np.float64)
    off = np.abs(acc - acc[-1]) > np.asarray(tol, np.float64) + 1e-12  # accuracy: a count ratio
    bad = np.flatnonzero(off)
    return int(bad[-1]) + 1 if bad.size else 0


def plateau_tolerance(correct: NDArray[np.float64], z: float = 1.96) -> NDArray[np.float64]:
    """Per layer (L,), the larger of PLATEAU_TOLERANCE and z standard errors of the paired
    accuracy difference to the last layer, sd(correct[l] - correct[-1]) / sqrt(n).

    0.01 alone can be below the noise, above all on the selection half where the plateau starts
    the peak search: on 300 examples whose correctness changes independently from layer to
    layer the difference has a standard error of 0.04, so no layer would stay within 0.01 and
    the search would start at the last layer. Where successive layers agree on most examples
    (as late layers of a real model do) the standard error is small and 0.01 is the tolerance.
    """
    y = np.asarray(correct, np.float64)
    d = y - y[-1]
    se = d.std(axis=1, ddof=1) / np.sqrt(y.shape[1]) if y.shape[1] > 1 else np.zeros(len(y))
    return np.maximum(PLATEAU_TOLERANCE, z * se)


def accuracy_lower_bound(
    correct: NDArray[np.float64], *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> NDArray[np.float64]:
    """Lower end (alpha/2 percentile) of the bootstrap interval of accuracy per layer.

    ``correct``: (L, n) 0/1. The resamples are ``draw_weights(n, n_boot, seed)``, those of
    ``per_layer_bootstrap`` (and of ``analyze_store``'s ``accuracy_lo``) with the same seed.
    """
    n = correct.shape[-1]
    boots = np.concatenate(
        [w @ correct.T / n for w in weight_blocks(draw_weights(n, n_boot, seed))]
    )
    return np.asarray(np.nanquantile(boots, alpha / 2, axis=0), np.float64)


def selection_half(subject: Any, example_id: Any, seed: int) -> NDArray[np.bool_]:
    """(n,) bool, True for the selection half: SELECTION_FRACTION of every subject, seeded."""
    return stratified_split(subject, example_id, SELECTION_FRACTION, seed, LANDMARK_STREAM)


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
    scores: dict[str, NDArray[np.float64]] | None = None,
) -> dict[str, float]:
    """ECE and mean-confidence differences from layer i to layer j with paired intervals, and
    those of the per-example ``scores`` given ({"nll": (L, n), "brier": (L, n)}: delta_nll,
    delta_brier, the primary endpoints, from the same resamples).

    ``conf``, ``correct``: (L, n). Returns delta_ece = ECE[j] - ECE[i] and delta_confidence with
    their (alpha/2, 1 - alpha/2) percentile intervals over ``n_boot`` resamples of the examples
    (:func:`~analyze.calibration.paired.paired_term_deltas`: each resample weights the same
    examples at both layers). ``weights``: the (n_boot, n) draw counts of
    ``draw_weights(n, n_boot, seed)`` when the caller has them already (else drawn).
    """
    base = {"accuracy": correct[[i]], "mean_confidence": conf[[i]]}
    new = {"accuracy": correct[[j]], "mean_confidence": conf[[j]]}
    for k, v in (scores or {}).items():
        base[k], new[k] = v[[i]], v[[j]]
    d = paired_term_deltas(
        base, new, n_bins=n_bins, n_boot=n_boot, seed=seed, alpha=alpha, weights=weights
    )
    out: dict[str, float] = {}
    pairs = [("delta_ece", "ece"), ("delta_confidence", "mean_confidence")]
    pairs += [(f"delta_{k}", k) for k in (scores or {})]
    for name, key in pairs:
        for suffix in ("", "_lo", "_hi"):
            out[name + suffix] = float(d[key][f"delta{suffix}"][0])
    return out


def window_change(
    conf: NDArray[np.float64],
    correct: NDArray[np.float64],
    i: int,
    j: int,
    *,
    n_bins: int = 10,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    scores: dict[str, NDArray[np.float64]] | None = None,
) -> dict[str, float]:
    """What a correction phase reports of layers i -> j on the examples given (its test half):
    ``ece_start``, ``ece_end`` and :func:`layer_deltas` (ΔECE, Δconfidence, and Δ of each of
    ``scores``, e.g. {"nll": (L, n), "brier": (L, n)}, with paired intervals); with scores, also
    their values at both ends (``nll_start``, ``nll_end``, ...). ``conf``, ``correct``: (L, n)."""
    ece = ece_from_sums(*bin_sums(conf[[i, j]], correct[[i, j]], n_bins))
    d = layer_deltas(
        conf, correct, i, j, n_bins=n_bins, n_boot=n_boot, seed=seed, alpha=alpha, scores=scores
    )
    ends = {
        f"{k}_{e}": float(v[x].mean())
        for k, v in (scores or {}).items()
        for e, x in (("start", i), ("end", j))
    }
    return {"ece_start": float(ece[0]), "ece_end": float(ece[1]), **ends, **d}


def _no_rise_note(
    acc: NDArray[np.float64],
    lo: NDArray[np.float64],
    lay: list[int],
    chance: float,
    first: int | None,
) -> str:
    if first is None:
        seen = (
            f"never has its lower 95% bound above chance {chance:.3f} (best accuracy "
            f"{acc.max():.3f} at layer {lay[int(acc.argmax())]})"
        )
    else:
        seen = (
            f"first has its lower 95% bound above chance {chance:.3f} at layer {lay[first]} but "
            f"ends at {acc[-1]:.3f} (lower bound {lo[-1]:.3f}), not above it"
        )
    return (
        f"accuracy {seen}: the model stays near chance, so no rise, plateau, "
        "peak-miscalibration layer or correction phase is reported"
    )


def depth_landmarks(
    layers: ArrayLike,
    conf: NDArray[np.float64],
    correct: NDArray[np.float64],
    *,
    chance: float,
    selection: NDArray[np.bool_] | None = None,
    accuracy_lo: ArrayLike | None = None,
    n_bins: int = 10,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    scores: dict[str, NDArray[np.float64]] | None = None,
) -> dict[str, Any]:
    """All landmarks as the JSON-able dict of ``AnalysisResult.landmarks``.

    ``layers``: (L,) depths, the last one being the model's last; ``conf``, ``correct``: (L, n)
    per-example confidence and correctness (0/1) of the analysed examples; ``chance``: the mean
    of 1 / K_i over them (:func:`~analyze.calibration.chance_accuracy`); ``selection``: (n,)
    bool, the selection half (None: :func:`selection_half` of the examples as one subject, ids
    0..n-1); ``accuracy_lo``: (L,) lower bounds of accuracy's bootstrap interval when the caller
    has them (else :func:`accuracy_lower_bound` with ``n_boot``, ``seed``, ``alpha``);
    ``scores``: per-example proper scores (L, n) whose change the correction phase also reports
    ({"nll": ..., "brier": ...}: delta_nll, delta_brier with paired intervals).
    """
    if not 0.0 < chance <= 1.0:
        raise ValueError(f"chance must be an accuracy in (0, 1], got {chance!r}")
    lay = [int(x) for x in np.asarray(layers)]
    conf, correct = np.asarray(conf, np.float64), np.asarray(correct, np.float64)
    n = correct.shape[1]
    acc = correct.mean(axis=1)
    lo = (
        accuracy_lower_bound(correct, n_boot=n_boot, seed=seed, alpha=alpha)
        if accuracy_lo is None
        else np.asarray(accuracy_lo, np.float64)
    )
    if selection is None:
        selection = selection_half(np.zeros(n, int), np.arange(n), seed)
    sel = np.asarray(selection, bool)
    if sel.shape != (n,):
        raise ValueError(f"selection must have shape (n,) = ({n},), got {sel.shape}")
    out = _empty_landmarks(chance, sel, seed)
    notes: list[str] = out["notes"]
    first, rise = first_above(lo, chance), stays_above(lo, chance)
    out["first_crossing_layer"] = None if first is None else lay[first]
    if rise is None:
        notes.append(_no_rise_note(acc, lo, lay, chance, first))
        return out
    out["rise_layer"] = out["rise_layer_sustained"] = lay[rise]
    out["plateau_layer"] = lay[plateau_index(acc, plateau_tolerance(correct))]
    if sel.sum() < 2 or (~sel).sum() < 2:
        notes.append(
            f"{int(sel.sum())} selection and {int((~sel).sum())} test examples: too few to choose "
            "the peak-miscalibration layer on one half and test it on the other"
        )
        return out
    found = _correction_phase(lay, conf, correct, sel, n_bins, n_boot, seed, alpha, scores)
    out["peak_miscalibration_layer"], out["correction_phase"] = found[0], found[1]
    notes += found[2]
    out["selection_split"]["search_start_layer"] = found[3]
    return out


def _empty_landmarks(chance: float, sel: NDArray[np.bool_], seed: int) -> dict[str, Any]:
    """The landmarks dict before any is found: every landmark None, the rules and the split."""
    return {
        "rise_layer": None,
        "first_crossing_layer": None,
        "rise_layer_sustained": None,
        "plateau_layer": None,
        "peak_miscalibration_layer": None,
        "correction_phase": None,
        "chance_accuracy": float(chance),
        "rise_threshold": float(chance),
        "rise_rule": "lower bound of accuracy's bootstrap 95% interval above chance_accuracy",
        "selection_split": {
            "method": "per subject, seeded (stratified_split, stream LANDMARK_STREAM)",
            "seed": int(seed),
            "fraction": SELECTION_FRACTION,
            "n_selection": int(sel.sum()),
            "n_test": int((~sel).sum()),
            "selection_chose": "search start (plateau of the selection half) and peak layer",
            "test_measured": "ece_start, ece_end, delta_ece, delta_confidence, their intervals",
        },
        "notes": [],
        "definitions": dict(DEFINITIONS),
    }


def _correction_phase(
    lay: list[int],
    conf: NDArray[np.float64],
    correct: NDArray[np.float64],
    sel: NDArray[np.bool_],
    n_bins: int,
    n_boot: int,
    seed: int,
    alpha: float,
    scores: dict[str, NDArray[np.float64]] | None = None,
) -> tuple[int, dict[str, Any] | None, list[str], int]:
    """(peak layer, correction phase or None, notes, search start layer): the peak chosen on the
    selection half ``sel``, the phase measured on the rest."""
    test = ~sel
    start = plateau_index(correct[:, sel].mean(axis=1), plateau_tolerance(correct[:, sel]))
    ece_sel = ece_from_sums(*bin_sums(conf[:, sel], correct[:, sel], n_bins))
    peak = start + int(np.argmax(ece_sel[start:]))
    last = len(lay) - 1
    if peak == last:
        note = (
            "ECE of the selection half is largest at the last layer: there is no correction phase"
        )
        return lay[peak], None, [note], lay[start]
    d = window_change(
        conf[:, test],
        correct[:, test],
        peak,
        last,
        n_bins=n_bins,
        n_boot=n_boot,
        seed=seed,
        alpha=alpha,
        scores=None if scores is None else {k: v[:, test] for k, v in scores.items()},
    )
    significant = d["delta_ece_lo"] > 0 or d["delta_ece_hi"] < 0
    cp = {
        "start": lay[peak],
        "end": lay[last],
        "n_layers": last - peak,
        **d,
        "significant": bool(significant),
        "significant_confidence": bool(
            d["delta_confidence_lo"] > 0 or d["delta_confidence_hi"] < 0
        ),
        "n_test": int(test.sum()),
        "n_selection": int(sel.sum()),
        "ece_start_selection": float(ece_sel[peak]),
        "ece_end_selection": float(ece_sel[last]),
    }
    notes = []
    if not significant:
        notes.append(
            f"the ECE change over the correction phase on the test half ({d['delta_ece']:+.3f}, "
            f"95% interval [{d['delta_ece_lo']:+.3f}, {d['delta_ece_hi']:+.3f}], "
            f"n = {int(test.sum())}) is not distinguishable from 0"
        )
    return lay[peak], cp, notes, lay[start]
