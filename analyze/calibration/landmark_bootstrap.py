"""Landmarks with their uncertainty (issue 17): the rise, plateau and peak layers re-selected in
every bootstrap resample, and the threshold-free contrast between the plateau and the last layer,
cross-fitted.

Re-selection. Resample b weights the examples by their draw counts w_b (``draw_weights``, the
resamples of every interval). In it, each landmark is chosen by its own rule
(:mod:`analyze.calibration.landmarks`) from the resample's per-layer values:

- rise: the first layer from which accuracy's lower 95% bound stays above chance. Inside a
  resample the bound is the normal one, acc - 1.96 sqrt(acc (1 - acc) / n) (the percentile bound
  of the point estimate would need a bootstrap inside each resample);
- plateau: the first layer from which accuracy stays within max(0.01, 1.96 x the standard error
  of the paired difference to the last layer) of the last layer's, both under the resample;
- peak: on the selection half (the draw counts of its examples), the layer of largest ECE from
  that half's plateau on, as the point estimate chooses it.

``*_layer_interval`` is [lo, hi]: the alpha/2 and 1 - alpha/2 quantiles of the chosen layer over
the resamples (values that occur, ``inverted_cdf``); a resample in which the landmark is not
reached counts as beyond the last layer, and a bound that falls there is None.

Cross-fitted plateau-to-last contrast. The examples are split into the selection half S and the
test half T (the landmarks' split). The plateau chosen on S is measured on T: Δ_T = metric(last)
- metric(plateau_S) over T's examples; the plateau chosen on T is measured on S: Δ_S likewise. No
example is measured at a layer its own data chose. The two estimates are combined weighted by the
halves' sizes, Δ = (n_S Δ_S + n_T Δ_T) / (n_S + n_T) (for the mean-type NLL and Brier this is
the mean over every example of its change from the plateau chosen without it to the last layer).
The interval is the percentile interval of the same combination over the resamples (each half's
Δ from its own examples' draw counts, the halves' weights n_S, n_T fixed, the chosen plateaus
held fixed as in the correction phase's test).

Shapes: ``correct``, ``conf``, ``nll``, ``brier`` (L, n); ``selection`` (n,) bool; ``weights``
(B, n) draw counts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse
from numpy.typing import NDArray

from analyze.calibration._binning import bin_index, ece_from_sums
from analyze.calibration._bootstrap import nan_interval
from analyze.calibration.landmarks import (
    PLATEAU_TOLERANCE,
    plateau_index,
    plateau_tolerance,
    stays_above,
)

Z = 1.96


def _last_false_plus_one(ok: NDArray[np.bool_]) -> NDArray[np.int64]:
    """Per row of ok (B, L): the first index from which every entry is True; L when the last
    entry is False (not reached)."""
    n_layers = ok.shape[1]
    bad = ~ok
    last_bad = n_layers - 1 - np.argmax(bad[:, ::-1], axis=1)
    out = np.where(bad.any(axis=1), last_bad + 1, 0)
    return np.where(bad[:, -1], n_layers, out)


def _plateau_rows(
    w_t: NDArray[np.floating[Any]], correct: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Plateau index per resample (B,) and the resamples' accuracy (B, L), for draw counts w_t
    (n, B) of the examples of correct (L, n)."""
    total = w_t.sum(axis=0, dtype=np.float64)[:, None]
    acc = (correct.astype(w_t.dtype) @ w_t).T / total
    diff = (correct != correct[-1]).astype(w_t.dtype)  # |correct_l - correct_last|
    s2 = (diff @ w_t).T / total  # weighted mean of d^2 = |d|
    s1 = acc - acc[:, -1:]
    var = np.maximum(s2 - s1 * s1, 0) * total / np.maximum(total - 1, 1)
    tol = np.maximum(PLATEAU_TOLERANCE, Z * np.sqrt(var / total))
    ok = np.abs(acc - acc[:, -1:]) <= tol + 1e-12
    return _last_false_plus_one(ok), acc


def _ece_rows(
    w_t: NDArray[np.floating[Any]],
    conf: NDArray[np.float64],
    correct: NDArray[np.float64],
    n_bins: int,
) -> NDArray[np.float64]:
    """ECE per resample and layer (B, L) under draw counts w_t (n, B): the weighted bin counts
    and gap sums are one sparse product (2 L entries per example) in w_t's dtype."""
    n_layers, n = conf.shape
    size = n_layers * n_bins
    cols = np.arange(n_layers)[:, None] * n_bins + bin_index(conf, n_bins)  # (L, n)
    design = scipy.sparse.csc_matrix(
        (
            np.concatenate([np.ones(conf.size), (conf - correct).ravel()]).astype(w_t.dtype),
            (
                np.concatenate([cols.ravel(), size + cols.ravel()]),
                np.tile(np.arange(n), 2 * n_layers),
            ),
        ),
        shape=(2 * size, n),
    )
    s = np.asarray(design @ w_t, np.float64).T.reshape(-1, 2, n_layers, n_bins)
    return ece_from_sums(s[:, 0], s[:, 1], np.zeros_like(s[:, 1]))


def _interval(idx: NDArray[np.int64], layers: list[int], alpha: float) -> list[int | None]:
    """[lo, hi] layer values of the chosen indices (B,), len(layers) meaning not reached."""
    q = np.quantile(idx, [alpha / 2, 1 - alpha / 2], method="inverted_cdf")
    return [layers[int(x)] if x < len(layers) else None for x in q]


def reselected_layers(
    conf: NDArray[np.float64],
    correct: NDArray[np.float64],
    selection: NDArray[np.bool_],
    weights: NDArray[Any],
    *,
    chance: float,
    n_bins: int = 10,
) -> dict[str, NDArray[np.int64]]:
    """The rise, plateau and peak chosen in each resample: {name: (B,) layer indices}, L where
    not reached (module docstring)."""
    w_t = np.ascontiguousarray(np.asarray(weights).T, np.float32)  # (n, B)
    n_layers, n = correct.shape
    plateau, acc = _plateau_rows(w_t, correct)
    lower = acc - Z * np.sqrt(np.maximum(acc * (1 - acc), 0) / n)
    rise = _last_false_plus_one(lower > chance)
    ws = w_t[selection]
    start, _ = _plateau_rows(ws, correct[:, selection])
    start = np.minimum(start, n_layers - 1)
    ece_s = _ece_rows(ws, conf[:, selection], correct[:, selection], n_bins)
    masked = np.where(np.arange(n_layers)[None, :] >= start[:, None], ece_s, -np.inf)
    return {"rise": rise, "plateau": plateau, "peak": np.argmax(masked, axis=1)}


def reselected_intervals(
    layers: list[int],
    conf: NDArray[np.float64],
    correct: NDArray[np.float64],
    selection: NDArray[np.bool_],
    weights: NDArray[Any],
    *,
    chance: float,
    n_bins: int = 10,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """``rise_layer_interval``, ``plateau_layer_interval``, ``peak_layer_interval`` and how often
    each landmark was not reached (``*_not_reached``), from :func:`reselected_layers`."""
    found = reselected_layers(conf, correct, selection, weights, chance=chance, n_bins=n_bins)
    out: dict[str, Any] = {}
    for name, idx in found.items():
        out[f"{name}_layer_interval"] = _interval(idx, layers, alpha)
        out[f"{name}_not_reached"] = float(np.mean(idx >= len(layers)))
    return out


def _half_deltas(
    w_t: NDArray[np.floating[Any]],
    values: dict[str, NDArray[np.float64]],
    i: int,
    j: int,
    n_bins: int,
) -> dict[str, NDArray[np.float64]]:
    """metric(j) - metric(i) under the draw counts w_t (n_h, B'): ece, nll, brier."""
    total = w_t.sum(axis=0, dtype=np.float64)
    conf, correct = values["conf"][[i, j]], values["correct"][[i, j]]
    ece = _ece_rows(w_t, conf, correct, n_bins)
    out = {"ece": ece[:, 1] - ece[:, 0]}
    for k in ("nll", "brier"):
        d = (values[k][j] - values[k][i]).astype(w_t.dtype)
        out[k] = (d @ w_t) / total
    return out


def plateau_to_last(
    conf: NDArray[np.float64],
    correct: NDArray[np.float64],
    nll: NDArray[np.float64],
    brier: NDArray[np.float64],
    selection: NDArray[np.bool_],
    weights: NDArray[Any],
    *,
    layers: list[int],
    n_bins: int = 10,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """The cross-fitted plateau-to-last contrast (module docstring): delta_ece, delta_nll,
    delta_brier with *_lo/*_hi, and each half's plateau, size and estimates."""
    last = len(layers) - 1
    halves = {"selection": np.asarray(selection, bool), "test": ~np.asarray(selection, bool)}
    chosen = {
        name: plateau_index(correct[:, h].mean(axis=1), plateau_tolerance(correct[:, h]))
        for name, h in halves.items()
    }
    w_all = np.ascontiguousarray(np.asarray(weights).T, np.float32)  # (n, B)
    ones = np.ones((correct.shape[1], 1))  # the point estimate, in float64
    sizes, point, boots, info = {}, {}, {}, []
    for measured, other in (("test", "selection"), ("selection", "test")):
        h = halves[measured]
        vals = {
            "conf": conf[:, h],
            "correct": correct[:, h],
            "nll": nll[:, h],
            "brier": brier[:, h],
        }
        p = chosen[other]
        sizes[measured] = int(h.sum())
        point[measured] = {
            k: float(v[0]) for k, v in _half_deltas(ones[h], vals, p, last, n_bins).items()
        }
        boots[measured] = _half_deltas(w_all[h], vals, p, last, n_bins)
        info.append(
            {
                "plateau_chosen_on": other,
                "plateau_layer": layers[p],
                "measured_on": measured,
                "n": sizes[measured],
                **{f"delta_{k}": v for k, v in point[measured].items()},
            }
        )
    n_total = sum(sizes.values())
    out: dict[str, Any] = {"start": None, "end": layers[last]}
    for k in ("ece", "nll", "brier"):
        comb = sum(sizes[m] * point[m][k] for m in sizes) / n_total
        reps = sum(sizes[m] * boots[m][k] for m in sizes) / n_total
        lo, hi = nan_interval(np.asarray(reps)[:, None], [alpha / 2, 1 - alpha / 2])
        out.update(
            {
                f"delta_{k}": float(comb),
                f"delta_{k}_lo": float(lo[0]),
                f"delta_{k}_hi": float(hi[0]),
            }
        )
    out["start"] = [h["plateau_layer"] for h in info]
    out["halves"] = info
    out["significant_ece"] = bool(out["delta_ece_lo"] > 0 or out["delta_ece_hi"] < 0)
    out["significant_nll"] = bool(out["delta_nll_lo"] > 0 or out["delta_nll_hi"] < 0)
    return out


DEFINITIONS = {
    "chance_best_constant": "accuracy of always answering the most frequent correct letter "
    "(labels are not balanced, so it can exceed chance_accuracy)",
    "rise_layer_both_chances": "first layer from which accuracy's lower 95% bound stays above "
    "both chance_accuracy and chance_best_constant (the rise a letter-frequency guesser cannot "
    "reach); None when the last layer's bound is not above both",
    "rise_layer_interval": "[lo, hi]: 2.5% and 97.5% quantiles of the rise layer re-selected in "
    "every bootstrap resample (inside a resample accuracy's lower bound is acc - 1.96 sqrt(acc "
    "(1 - acc) / n)); a resample without a rise counts as beyond the last layer, and a bound "
    "there is null (analyze.calibration.landmark_bootstrap)",
    "plateau_layer_interval": "[lo, hi] of the plateau layer re-selected in every resample "
    "(its rule applied to the resample's accuracies and paired standard errors)",
    "peak_layer_interval": "[lo, hi] of the peak-miscalibration layer re-selected in every "
    "resample of the selection half (its plateau, then its largest ECE from there on)",
    "plateau_to_last": "the threshold-free primary contrast, cross-fitted: the plateau chosen "
    "on the selection half is measured on the test half (delta = metric(last) - "
    "metric(plateau) over its examples), the plateau chosen on the test half is measured on "
    "the selection half; delta = (n_selection delta_selection + n_test delta_test) / n; "
    "*_lo/*_hi: percentile bootstrap 95% interval of that combination over the resamples "
    "(each half's delta from its own examples' draw counts, plateaus held fixed); halves: "
    "each half's chosen plateau and estimates; start: the two plateaus",
}


def landmark_extras(
    layers: list[int],
    conf: NDArray[np.float64],
    correct: NDArray[np.float64],
    nll: NDArray[np.float64],
    brier: NDArray[np.float64],
    selection: NDArray[np.bool_],
    weights: NDArray[Any],
    *,
    chance: float,
    chance_best_constant: float,
    accuracy_lo: NDArray[np.float64],
    n_bins: int = 10,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """The keys issue 17 adds to landmarks.json (DEFINITIONS), from the analysed examples'
    per-layer values, the selection half, the resamples' draw counts and accuracy's lower
    bounds (L,)."""
    both = max(chance, chance_best_constant)
    rise_both = stays_above(accuracy_lo, both)
    out: dict[str, Any] = {
        "chance_best_constant": float(chance_best_constant),
        "rise_layer_both_chances": None if rise_both is None else layers[rise_both],
    }
    found = reselected_intervals(
        layers, conf, correct, selection, weights, chance=chance, n_bins=n_bins, alpha=alpha
    )
    out.update({k: v for k, v in found.items() if k.endswith("_interval")})
    out["landmark_bootstrap"] = {
        "n_boot": int(np.shape(weights)[0]),
        **{k: v for k, v in found.items() if k.endswith("_not_reached")},
    }
    out["plateau_to_last"] = None
    if selection.sum() >= 2 and (~selection).sum() >= 2:
        out["plateau_to_last"] = plateau_to_last(
            conf, correct, nll, brier, selection, weights, layers=layers, n_bins=n_bins, alpha=alpha
        )
    return out
