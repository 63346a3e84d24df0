"""Metrics of answer logits and paired bootstrap intervals of their changes.

Ablation and steering compare a condition with the unchanged model on the same examples, so the
interval of a change resamples the examples once for both ("paired"): every resample is a weight
vector w (n,) of multinomial draw counts, as in ``analyze._bootstrap``; mean-type metrics are
``w @ x / n`` and binned ones come from ``w @ (one-hot bin design)``.

Shapes: logits (G, n, K) — G groups (layers, conditions...) of n examples and K options —
``label`` (n,), ``choice_mask`` (n, K). Definitions are those of ``analyze.metrics``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import NDArray

from analyze._binning import bin_index, ece_from_sums, mce_from_sums
from analyze._checks import as_label, as_mask
from analyze._probs import answer_probs, brier_terms, entropy, nll_terms

MEAN_METRICS = ("accuracy", "mean_confidence", "brier", "nll", "entropy")
BINNED_METRICS = ("ece", "mce")
METRICS = ("accuracy", "ece", "mce", "brier", "nll", "mean_confidence", "entropy")
_BLOCK = 1 << 22  # elements per block of weights or design (32 MB float64)


def terms(
    logits: NDArray[np.floating], label: NDArray[Any], mask: NDArray[np.bool_] | None
) -> dict[str, NDArray[np.float64]]:
    """Per-example terms, each (G, n): correct, conf and the MEAN_METRICS."""
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


def metrics(
    logits: NDArray[np.floating],
    label: NDArray[Any],
    mask: NDArray[np.bool_] | None,
    n_bins: int = 10,
) -> dict[str, NDArray[np.float64]]:
    """Every metric of METRICS per group: logits (G, n, K) -> {name: (G,)}."""
    t = terms(logits, label, mask)
    out = {name: t[name].mean(axis=-1) for name in MEAN_METRICS}
    sums = _bin_sums(t["mean_confidence"], t["accuracy"], np.ones(t["accuracy"].shape[-1]), n_bins)
    out["ece"] = ece_from_sums(*sums)
    out["mce"] = mce_from_sums(*sums, 1)
    return out


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


def _weights(n: int, n_boot: int, seed: int) -> Iterator[NDArray[np.float64]]:
    """Blocks (rows, n) of bootstrap weights (draw counts), n_boot rows in all."""
    rng = np.random.default_rng(seed)
    rows = max(1, _BLOCK // n)
    for start in range(0, n_boot, rows):
        r = min(rows, n_boot - start)
        idx = rng.integers(0, n, size=(r, n))
        flat = (np.arange(r)[:, None] * n + idx).ravel()
        yield np.bincount(flat, minlength=r * n).reshape(r, n).astype(np.float64)


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
) -> dict[str, dict[str, NDArray[np.float64]]]:
    """Metrics of ``base`` and ``new`` logits (G, n, K) and paired intervals of new − base.

    Returns {metric: {"base", "new", "new_lo", "new_hi", "delta", "delta_lo", "delta_hi"}}, each
    (G,). ``n_boot = 0`` skips the intervals (nan). Resamples are shared by all groups.
    """
    b, a = np.asarray(base, np.float64), np.asarray(new, np.float64)
    if b.shape != a.shape or b.ndim != 3:
        raise ValueError(f"base and new must share one shape (G, n, K); got {b.shape}, {a.shape}")
    g, n, _ = b.shape
    tb, ta = terms(b, label, mask), terms(a, label, mask)
    pb, pa = metrics(b, label, mask, n_bins), metrics(a, label, mask, n_bins)
    boots: dict[str, list[NDArray[np.float64]]] = {f"{k}_{x}": [] for k in METRICS for x in "dn"}
    if n_boot > 0:
        mean_new = np.concatenate([ta[k] for k in MEAN_METRICS]).T  # (n, 5G)
        mean_d = mean_new - np.concatenate([tb[k] for k in MEAN_METRICS]).T
        per_block = max(1, _BLOCK // (n * 6 * n_bins))  # groups per design block
        for w in _weights(n, n_boot, seed):
            dn, nw = (w @ mean_d / n).reshape(-1, 5, g), (w @ mean_new / n).reshape(-1, 5, g)
            for j, k in enumerate(MEAN_METRICS):
                boots[f"{k}_d"].append(dn[:, j])
                boots[f"{k}_n"].append(nw[:, j])
            parts: dict[str, list[NDArray[np.float64]]] = {
                f"{k}_{x}": [] for k in BINNED_METRICS for x in "dn"
            }
            for lo in range(0, g, per_block):
                sl = slice(lo, min(lo + per_block, g))
                vals = {}
                for tag, t in (("b", tb), ("n", ta)):
                    des = _design(t["mean_confidence"][sl], t["accuracy"][sl], n_bins)
                    s = (w @ des).reshape(w.shape[0], 3, -1, n_bins)
                    vals[f"ece_{tag}"] = ece_from_sums(s[:, 0], s[:, 1], s[:, 2])
                    vals[f"mce_{tag}"] = mce_from_sums(s[:, 0], s[:, 1], s[:, 2], 1)
                for k in BINNED_METRICS:
                    parts[f"{k}_n"].append(vals[f"{k}_n"])
                    parts[f"{k}_d"].append(vals[f"{k}_n"] - vals[f"{k}_b"])
            for key, v in parts.items():
                boots[key].append(np.concatenate(v, axis=1))
    q = [alpha / 2, 1 - alpha / 2]
    out: dict[str, dict[str, NDArray[np.float64]]] = {}
    for k in METRICS:
        nan = np.full(g, np.nan)
        d_lo, d_hi, n_lo, n_hi = nan, nan, nan, nan
        if n_boot > 0:
            d_lo, d_hi = np.nanquantile(np.concatenate(boots[f"{k}_d"]), q, axis=0)
            n_lo, n_hi = np.nanquantile(np.concatenate(boots[f"{k}_n"]), q, axis=0)
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
    boots = np.concatenate([w @ d.T / n for w in _weights(n, n_boot, seed)])
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2], axis=0)
    return point, lo, hi
