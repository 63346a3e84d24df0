"""Synthetic AnalysisResults for the report tests: accuracy, calibration and landmarks simulated
example by example (no store)."""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl

from analyze import calibration as M
from analyze.calibration.landmarks import depth_landmarks
from analyze.results import INTERVAL_METRICS, AnalysisResult

K = 4
CATEGORIES = ("humanities", "stem", "social sciences", "other")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _metrics(conf: np.ndarray, correct: np.ndarray, bins: int) -> dict[str, float]:
    """Headline metrics of one layer: conf, correct (n,)."""
    return {
        "accuracy": float(correct.mean()),
        "ece": M.ece(conf, correct, bins),
        "mce": M.mce(conf, correct, bins),
        "mean_confidence": float(conf.mean()),
        "brier": float(((1 - conf) ** 2 * correct + conf**2 * (1 - correct)).mean()),
        "nll": float(
            -np.log(np.clip(np.where(correct > 0, conf, (1 - conf) / (K - 1)), 1e-6, 1)).mean()
        ),
    }


def synthetic_result(
    kind: str = "correction",
    *,
    n_layers: int = 32,
    n: int = 800,
    label: str = "synthetic-7b",
    bins: int = 10,
    n_boot: int = 40,
    seed: int = 0,
) -> AnalysisResult:
    """A realistic AnalysisResult simulated example by example.

    ``kind``: ``correction`` (accuracy rises at ~60% depth, then overconfidence peaks and is
    corrected in the last layers), ``flat`` (accuracy stays at chance), ``late_peak`` (ECE keeps
    growing to the last layer)."""
    rng = np.random.default_rng(seed)
    depth = np.arange(n_layers) / (n_layers - 1)
    if kind == "flat":
        acc_t = np.full(n_layers, 1 / K)
        over = 0.25 + 0.15 * np.sin(8 * depth)
    else:
        acc_t = 1 / K + 0.25 * _sigmoid((depth - 0.62) / 0.03)
        over = 0.04 + 0.30 * np.exp(-(((depth - 0.84) / 0.07) ** 2)) * (depth > 0.6)
        if kind == "late_peak":
            over = 0.04 + 0.3 * depth**4
    p = np.clip(acc_t[:, None] + rng.normal(0, 0.12, (n_layers, n)), 0.02, 0.98)
    correct = (rng.random((n_layers, n)) < p).astype(np.float64)
    conf = np.clip(p + over[:, None] + rng.normal(0, 0.05, (n_layers, n)), 1 / K, 1.0)
    category = np.array(CATEGORIES)[rng.integers(0, len(CATEGORIES), n)]

    rows, boots = [], rng.integers(0, n, (n_boot, n))
    for ell in range(n_layers):
        row = {"layer": ell, "n": n, **_metrics(conf[ell], correct[ell], bins)}
        bs = [_metrics(conf[ell, b], correct[ell, b], bins) for b in boots]
        for name in INTERVAL_METRICS:
            row[f"{name}_lo"], row[f"{name}_hi"] = np.percentile([b[name] for b in bs], [2.5, 97.5])
        rows.append(row)
    layers = pl.DataFrame(rows).with_columns(
        ece_equal_mass=pl.col("ece") * 1.05,
        entropy=pl.lit(np.log(K)) * (1.2 - pl.col("mean_confidence")),
        option_mass=pl.Series(0.02 + 0.9 * depth**3),
        vocab_entropy=pl.Series(9.0 * (1 - depth) + 1.0),
        kl_to_last=pl.Series(2.0 * (1 - depth) ** 2),
        flip_rate=pl.Series(0.75 * (1 - depth) ** 0.5),
        temperature=pl.lit(1.6),
        ece_temperature_scaled=pl.col("ece") * 0.4,
        nll_temperature_scaled=pl.col("nll") * 0.9,
    )
    group_rows = []
    for g in CATEGORIES:
        sel = category == g
        for ell in range(n_layers):
            m = _metrics(conf[ell, sel], correct[ell, sel], bins)
            group_rows.append(
                {"group_by": "category", "group": g, "layer": ell, "n": int(sel.sum()), **m}
            )
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    rel = {
        "count": np.stack([np.bincount(i, minlength=bins) for i in idx]).astype(np.int64),
        "sum_conf": np.stack([np.bincount(i, c, bins) for i, c in zip(idx, conf)]),
        "sum_correct": np.stack([np.bincount(i, c, bins) for i, c in zip(idx, correct)]),
        "conf_hist": np.stack([np.histogram(c, 20, (0, 1))[0] for c in conf]).astype(np.int64),
    }
    return AnalysisResult(
        layers=layers,
        by_group=pl.DataFrame(group_rows),
        landmarks=depth_landmarks(
            layers["layer"].to_numpy(),
            conf,
            correct,
            chance=1 / K,
            accuracy_lo=layers["accuracy_lo"].to_numpy(),
            n_bins=bins,
            n_boot=200,
            seed=seed,
        ),
        reliability=rel,
        meta={
            "store": f"/data/stores/{label}.zarr",
            "store_hash": hashlib.sha256(f"{label}/{kind}".encode()).hexdigest()[:16],
            "model": label,
            "label": label,
            "dataset": "mmlu",
            "split": "test",
            "template": "lm-eval-mmlu",
            "n_examples": n,
            "n_layers": n_layers,
            "params": {"bins": bins, "bootstrap": n_boot, "seed": seed, "mce_min_count": 10},
        },
    )
