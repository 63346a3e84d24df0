"""Paired bootstrap intervals of metric changes: the one implementation.

A change compares two conditions on the same examples (an ablation or a steering method with the
unchanged model, a late layer with an earlier one), so its interval resamples the examples once
for both ("paired"). Every resample is a weight vector w (n,) of multinomial draw counts, the
draws of :func:`~analyze.calibration.draw_weights` (those of ``bootstrap_ci`` and
``per_layer_bootstrap`` with the same seed); mean-type metrics are ``w @ x / n`` and the binned
ones come from ``w @ (one-hot bin design)``.

Shapes: per-example terms (G, n) — G groups (layers, conditions...) of n examples; logits
(G, n, K), ``label`` (n,), ``choice_mask`` (n, K). Definitions are those of
:mod:`analyze.calibration.metrics`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from analyze.calibration._binning import MCE_MIN_COUNT, bin_index, ece_from_sums, mce_from_sums
from analyze.calibration._bootstrap import BLOCK_ELEMENTS, draw_weights, nan_interval
from analyze.calibration._checks import as_label, as_mask
from analyze.calibration._probs import answer_probs, brier_terms, entropy, nll_terms

MEAN_METRICS = ("accuracy", "mean_confidence", "brier", "nll", "entropy")
BINNED_METRICS = ("ece", "mce")
METRICS = ("accuracy", "ece", "mce", "brier", "nll", "mean_confidence", "entropy")
Terms = Mapping[str, NDArray[np.float64]]


def logit_terms(
    logits: NDArray[np.floating], label: NDArray[Any], mask: NDArray[np.bool_] | None
) -> dict[str, NDArray[np.float64]]:
    """Per-example terms of the MEAN_METRICS, each (G, n), from logits (G, n, K); "accuracy"
    is the correctness and "mean_confidence" the confidence of each example."""
    z = np.asarray(logits, np.float64)
    n, k = z.shape[-2:]
    m = as_mask(mask, n, k)
    lab = as_label(label, n, k, m)
    p = answer_probs(z, m)
    conf = p.max(axis=-1)
    correct = (p.argmax(axis=-1) == lab).astype(np.float64)
    return {
        "accuracy": correct,
        "mean_confidence": conf,
        "brier": brier_terms(p, lab, m),
        "nll": nll_terms(p, lab),
        "entropy": entropy(p),
    }


def term_metrics(
    terms: Terms, n_bins: int = 10, mce_min_count: int = MCE_MIN_COUNT
) -> dict[str, NDArray[np.float64]]:
    """The metrics of per-example terms (those of :func:`logit_terms` present): {name: (G,)};
    ECE and MCE (over bins of at least ``mce_min_count`` examples) from confidence and
    correctness."""
    out = {name: terms[name].mean(axis=-1) for name in MEAN_METRICS if name in terms}
    conf, correct = terms["mean_confidence"], terms["accuracy"]
    sums = _bin_sums(conf, correct, np.ones(correct.shape[-1]), n_bins)
    out["ece"] = ece_from_sums(*sums)
    out["mce"] = mce_from_sums(*sums, mce_min_count)
    return out


def logit_metrics(
    logits: NDArray[np.floating],
    label: NDArray[Any],
    mask: NDArray[np.bool_] | None,
    n_bins: int = 10,
    mce_min_count: int = MCE_MIN_COUNT,
) -> dict[str, NDArray[np.float64]]:
    """Every metric of METRICS per group: logits (G, n, K) -> {name: (G,)}."""
    return term_metrics(logit_terms(logits, label, mask), n_bins, mce_min_count)


def _bin_sums(
    conf: NDArray[np.float64], correct: NDArray[np.float64], w: NDArray[np.float64], m: int
) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any]]:
    """Weighted count, sum_conf, sum_correct (G, M) for conf, correct (G, n), weights (n,)."""
    g = conf.shape[0]
    flat = (np.arange(g)[:, None] * m + bin_index(conf, m)).ravel()
    ww = np.broadcast_to(w, conf.shape).ravel()
    size = g * m
    count = np.bincount(flat, weights=ww, minlength=size).reshape(g, m)
    s_conf = np.bincount(flat, weights=ww * conf.ravel(), minlength=size).reshape(g, m)
    s_corr = np.bincount(flat, weights=ww * correct.ravel(), minlength=size).reshape(g, m)
    return count, s_conf, s_corr


def _design(conf: NDArray[np.float64], correct: NDArray[np.float64], m: int) -> NDArray[Any]:
    """(n, 3 G M): per example its one-hot bin, conf and correct in that bin, for G groups."""
    g, n = conf.shape
    design = np.zeros((n, 3, g * m))
    cols = (np.arange(g)[:, None] * m + bin_index(conf, m)).T  # (n, G)
    rows = np.arange(n)[:, None]
    design[rows, 0, cols] = 1.0
    design[rows, 1, cols] = conf.T
    design[rows, 2, cols] = correct.T
    return design.reshape(n, 3 * g * m)


def weight_blocks(weights: NDArray[Any]) -> Iterator[NDArray[np.float64]]:
    """Consecutive row blocks (rows, n) of draw counts (n_boot, n), as float64, about
    BLOCK_ELEMENTS elements each."""
    n_boot, n = weights.shape
    step = max(1, BLOCK_ELEMENTS // n)
    for lo in range(0, n_boot, step):
        yield weights[lo : lo + step].astype(np.float64)


def paired_term_deltas(
    base: Terms,
    new: Terms,
    *,
    n_bins: int = 10,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    weights: NDArray[Any] | None = None,
    mce_min_count: int = MCE_MIN_COUNT,
) -> dict[str, dict[str, NDArray[np.float64]]]:
    """Metrics of two conditions from their per-example terms (G, n) and paired intervals of
    new − base (the metrics of :func:`term_metrics`, MCE over bins of ``mce_min_count``).

    Returns {metric: {"base", "new", "new_lo", "new_hi", "delta", "delta_lo", "delta_hi"}}, each
    (G,). ``n_boot = 0`` skips the intervals (nan). Resamples are shared by all groups;
    ``weights``: their (n_boot, n) draw counts when the caller has them already (else drawn with
    ``seed``).
    """
    g, n = base["accuracy"].shape
    means = [k for k in MEAN_METRICS if k in base]
    names = [*means, *BINNED_METRICS]
    pb, pa = term_metrics(base, n_bins, mce_min_count), term_metrics(new, n_bins, mce_min_count)
    boots: dict[str, list[NDArray[np.float64]]] = {f"{k}_{x}": [] for k in names for x in "dn"}
    if n_boot > 0:
        if weights is None:
            weights = draw_weights(n, n_boot, seed)
        if weights.shape != (n_boot, n):
            raise ValueError(
                f"weights must have shape (n_boot, n) = {(n_boot, n)}, got {weights.shape}"
            )
        mean_new = np.concatenate([new[k] for k in means]).T  # (n, len(means) G)
        mean_d = mean_new - np.concatenate([base[k] for k in means]).T
        per_block = max(1, BLOCK_ELEMENTS // (n * 6 * n_bins))  # groups per design block
        for w in weight_blocks(weights):
            dn = (w @ mean_d / n).reshape(-1, len(means), g)
            nw = (w @ mean_new / n).reshape(-1, len(means), g)
            for j, k in enumerate(means):
                boots[f"{k}_d"].append(dn[:, j])
                boots[f"{k}_n"].append(nw[:, j])
            parts: dict[str, list[NDArray[np.float64]]] = {
                f"{k}_{x}": [] for k in BINNED_METRICS for x in "dn"
            }
            for lo in range(0, g, per_block):
                sl = slice(lo, min(lo + per_block, g))
                vals = {}
                for tag, t in (("b", base), ("n", new)):
                    des = _design(t["mean_confidence"][sl], t["accuracy"][sl], n_bins)
                    s = (w @ des).reshape(w.shape[0], 3, -1, n_bins)
                    vals[f"ece_{tag}"] = ece_from_sums(s[:, 0], s[:, 1], s[:, 2])
                    vals[f"mce_{tag}"] = mce_from_sums(s[:, 0], s[:, 1], s[:, 2], mce_min_count)
                for k in BINNED_METRICS:
                    parts[f"{k}_n"].append(vals[f"{k}_n"])
                    parts[f"{k}_d"].append(vals[f"{k}_n"] - vals[f"{k}_b"])
            for key, v in parts.items():
                boots[key].append(np.concatenate(v, axis=1))
    q = [alpha / 2, 1 - alpha / 2]
    out: dict[str, dict[str, NDArray[np.float64]]] = {}
    for k in names:
        nan = np.full(g, np.nan)
        d_lo, d_hi, n_lo, n_hi = nan, nan, nan, nan
        if n_boot > 0:
            d_lo, d_hi = nan_interval(np.concatenate(boots[f"{k}_d"]), q)
            n_lo, n_hi = nan_interval(np.concatenate(boots[f"{k}_n"]), q)
        out[k] = {
            "base": pb[k],
            "new": pa[k],
            "new_lo": n_lo,
            "new_hi": n_hi,
            "delta": pa[k] - pb[k],
            "delta_lo": d_lo,
            "delta_hi": d_hi,
        }
    return out


def paired_deltas(
    base: NDArray[np.floating],
    new: NDArray[np.floating],
    label: NDArray[Any],
    mask: NDArray[np.bool_] | None,
    *,
    n_bins: int = 10,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    mce_min_count: int = MCE_MIN_COUNT,
) -> dict[str, dict[str, NDArray[np.float64]]]:
    """:func:`paired_term_deltas` of ``base`` and ``new`` logits (G, n, K): every metric of
    METRICS."""
    b, a = np.asarray(base, np.float64), np.asarray(new, np.float64)
    if b.shape != a.shape or b.ndim != 3:
        raise ValueError(f"base and new must share one shape (G, n, K); got {b.shape}, {a.shape}")
    tb, ta = logit_terms(b, label, mask), logit_terms(a, label, mask)
    return paired_term_deltas(
        tb,
        ta,
        n_bins=n_bins,
        n_boot=n_boot,
        seed=seed,
        alpha=alpha,
        mce_min_count=mce_min_count,
    )


def mean_delta_ci(
    base: NDArray[np.floating],
    new: NDArray[np.floating],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Mean of new − base over examples and its paired interval: (G, n) each -> three (G,)."""
    d = np.asarray(new, np.float64) - np.asarray(base, np.float64)
    point = d.mean(axis=-1)
    if n_boot <= 0:
        return point, np.full_like(point, np.nan), np.full_like(point, np.nan)
    n = d.shape[-1]
    boots = np.concatenate([w @ d.T / n for w in weight_blocks(draw_weights(n, n_boot, seed))])
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2], axis=0)
    return point, lo, hi
