"""The pieces of a steering evaluation: method families, the dev choice, and the tables.

A *family* maps (store data, rows, parameter values) to answer logits (A, n, K); a
:class:`Method` is a family with its parameter chosen on dev. Tables follow one convention:
metric values with 95% percentile-bootstrap intervals (``*_lo``/``*_hi``) and changes against the
unsteered model (``d_*``) with paired intervals over the same resamples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from analyze.calibration import PAIRED_METRICS, bin_sums, logit_metrics, logit_terms, paired_deltas
from analyze.interventions.nullspace import ablate
from analyze.interventions.steer_data import TABLE_METRICS, Splits, StoreData, choose

# (store data, rows, values) -> answer logits (len(values), len(rows), K)
Family = Callable[[StoreData, NDArray[np.intp], Sequence[float]], NDArray[Any]]


@dataclass
class Method:
    """A steering method: a family of logits over one parameter (α, T or β), and its choice."""

    name: str
    layer: int
    param: float = 0.0
    offline: Family | None = None  # for transfer; None: not applicable offline
    sweep: list[dict[str, Any]] = field(default_factory=list)


def along(vector: NDArray[np.float64], scale: float) -> Family:
    """Offline steering along ``vector`` at the depth of the data (its stored residual)."""

    def family(data: StoreData, rows: NDArray[np.intp], alphas: Sequence[float]) -> Any:
        return data.sweep(rows, vector, scale, alphas)

    return family


def null_scaling(basis: NDArray[np.float64]) -> Family:
    """Offline scaling of span(basis) by β (:func:`analyze.interventions.nullspace.ablate`)."""

    def family(data: StoreData, rows: NDArray[np.intp], betas: Sequence[float]) -> Any:
        h = data.h[rows]
        return np.stack([data.lens.logits(ablate(h, basis, b)) for b in betas])

    return family


def temperature(t: float) -> Family:
    """Temperature scaling of the unsteered last-depth logits by a fixed T (values ignored)."""

    def family(data: StoreData, rows: NDArray[np.intp], _: Sequence[float]) -> Any:
        return data.lens.logits(data.h[rows])[None] / t

    return family


def sweep_rows(
    method: str,
    values: Sequence[float],
    split: str,
    z: NDArray[Any],
    data: StoreData,
    rows: Any,
    n_bins: int = 10,
) -> list[dict[str, Any]]:
    """One row per value: metrics of logits z (A, n, K) on ``rows`` (no intervals)."""
    m = logit_metrics(z, data.label[rows], data.mask[rows], n_bins)
    return [
        {"method": method, "param": float(v), "split": split, "n": int(rows.size)}
        | {k: float(m[k][i]) for k in PAIRED_METRICS}
        for i, v in enumerate(values)
    ]


def choose_on_dev(
    method: Method,
    values: Sequence[float],
    neutral: float,
    family: Family,
    data: StoreData,
    splits: Splits,
    max_drop: float,
    n_bins: int = 10,
) -> NDArray[Any]:
    """Sweep ``values`` on dev and test, set ``method.param`` from dev; returns test logits."""
    z_dev, z_test = family(data, splits.dev, values), family(data, splits.test, values)
    method.sweep = sweep_rows(method.name, values, "dev", z_dev, data, splits.dev, n_bins)
    method.sweep += sweep_rows(method.name, values, "test", z_test, data, splits.test, n_bins)
    dev = method.sweep[: len(values)]
    i = choose(values, [r["accuracy"] for r in dev], [r["ece"] for r in dev], neutral, max_drop)
    method.param = float(values[i])
    return np.asarray(z_test[i], np.float64)


def _metric_columns(res: dict[str, dict[str, NDArray[np.float64]]], j: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in TABLE_METRICS:
        r = res[k]
        out |= {k: r["new"][j], f"{k}_lo": r["new_lo"][j], f"{k}_hi": r["new_hi"][j]}
        out |= {
            f"d_{k}": r["delta"][j],
            f"d_{k}_lo": r["delta_lo"][j],
            f"d_{k}_hi": r["delta_hi"][j],
        }
    return {k: float(v) for k, v in out.items()}


def method_table(
    methods: Sequence[tuple[Method, NDArray[Any]]],
    base: NDArray[Any],
    data: StoreData,
    rows: NDArray[np.intp],
    *,
    n_bins: int = 10,
    n_boot: int = 1000,
    seed: int = 0,
) -> pl.DataFrame:
    """Test-split table: "none" then each method; ``base`` and each logits (len(rows), K)."""
    label, mask = data.label[rows], data.mask[rows]
    z = np.stack([base, *[np.asarray(x) for _, x in methods]])
    b = np.broadcast_to(base, z.shape)
    res = paired_deltas(b, z, label, mask, n_bins=n_bins, n_boot=n_boot, seed=seed)
    info = [("none", data.layer, float("nan"))] + [(m.name, m.layer, m.param) for m, _ in methods]
    return pl.DataFrame(
        [
            {"method": name, "layer": lay, "param": param, "n": int(rows.size)}
            | _metric_columns(res, j)
            for j, (name, lay, param) in enumerate(info)
        ]
    )


def reliability_table(
    logits: dict[str, NDArray[Any]], data: StoreData, rows: NDArray[np.intp], n_bins: int = 10
) -> pl.DataFrame:
    """Reliability-diagram data per method: (method, bin) count, mean confidence, accuracy."""
    out = []
    for name, z in logits.items():
        t = logit_terms(np.asarray(z)[None], data.label[rows], data.mask[rows])
        count, s_conf, s_corr = bin_sums(t["mean_confidence"][0], t["accuracy"][0], n_bins)
        for b in range(n_bins):
            c = int(count[b])
            out.append(
                {
                    "method": name,
                    "bin": b,
                    "bin_lo": b / n_bins,
                    "bin_hi": (b + 1) / n_bins,
                    "count": c,
                    "mean_confidence": float(s_conf[b] / c) if c else float("nan"),
                    "accuracy": float(s_corr[b] / c) if c else float("nan"),
                }
            )
    return pl.DataFrame(out)


def transfer_table(
    methods: Sequence[Method],
    targets: Sequence[tuple[str, StoreData, NDArray[np.intp]]],
    n_bins: int = 10,
    n_boot: int = 1000,
    seed: int = 0,
) -> pl.DataFrame:
    """Every offline-applicable method, its choice unchanged, on each (label, data, rows)."""
    out = []
    usable = [m for m in methods if m.offline is not None]
    for label, data, rows in targets:
        if rows.size < 2 or not usable:
            continue
        base = data.lens.logits(data.h[rows])
        z = np.stack([np.asarray(m.offline(data, rows, [m.param])[0]) for m in usable if m.offline])
        b = np.broadcast_to(base, z.shape)
        lab, mask = data.label[rows], data.mask[rows]
        res = paired_deltas(b, z, lab, mask, n_bins=n_bins, n_boot=n_boot, seed=seed)
        for j, m in enumerate(usable):
            row = {"target": label, "method": m.name, "param": m.param, "n": int(rows.size)}
            for k in ("accuracy", "ece", "mce"):
                r = res[k]
                row[f"{k}_base"], row[f"d_{k}"] = float(r["base"][j]), float(r["delta"][j])
                row[f"d_{k}_lo"], row[f"d_{k}_hi"] = (
                    float(r["delta_lo"][j]),
                    float(r["delta_hi"][j]),
                )
            out.append(row)
    return pl.DataFrame(out)
