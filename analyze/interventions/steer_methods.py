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
from analyze.interventions.steer_data import TABLE_METRICS, Splits, StoreData
from analyze.interventions.steer_power import mde
from analyze.interventions.steer_select import Rule, choose

TRANSFER_METRICS = ("accuracy", "ece", "mce", "brier", "nll")
CHOICE_KEYS = ("objective", "d_accuracy", "d_accuracy_lo", "keeps_accuracy")
# (store data, rows, values) -> answer logits (len(values), len(rows), K)
Family = Callable[[StoreData, NDArray[np.intp], Sequence[float]], NDArray[Any]]


@dataclass
class Method:
    """A steering method: a family of logits over one parameter (α, T or β), and its choice.

    After the dev choice: ``z_dev``/``z_test`` (n, K) the logits at the chosen value;
    ``z_power`` the test logits its MDE is measured at (the chosen value, or the nearest
    non-neutral one when the neutral value was chosen; None: no such value) and ``power_param``
    that value; ``ref_test``: the logits its changes are against (None: *none*)."""

    name: str
    layer: int
    param: float = 0.0
    offline: Family | None = None  # for transfer; None: not applicable offline
    sweep: list[dict[str, Any]] = field(default_factory=list)
    z_dev: NDArray[Any] | None = None
    z_test: NDArray[Any] | None = None
    z_power: NDArray[Any] | None = None
    power_param: float = float("nan")
    ref_test: NDArray[Any] | None = None


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


def fixed(family: Family, value: float) -> Family:
    """``family`` at one fixed value, whatever values it is asked for (one row)."""

    def f(data: StoreData, rows: NDArray[np.intp], _: Sequence[float]) -> Any:
        return family(data, rows, [value])

    return f


def scaled(family: Family, t: float) -> Family:
    """``family`` followed by temperature scaling by a fixed T (direction+temperature)."""

    def f(data: StoreData, rows: NDArray[np.intp], values: Sequence[float]) -> Any:
        return np.asarray(family(data, rows, values)) / t

    return f


def sweep_rows(
    method: str,
    values: Sequence[float],
    split: str,
    z: NDArray[Any],
    data: StoreData,
    rows: Any,
    n_bins: int = 10,
    choice: Sequence[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One row per value: metrics of logits z (A, n, K) on ``rows`` (no intervals), and on dev
    the rule's record of each value (``choice``: objective, Δaccuracy and the lower bound of
    its interval, keeps_accuracy; null on test)."""
    m = logit_metrics(z, data.label[rows], data.mask[rows], n_bins)
    return [
        {"method": method, "param": float(v), "split": split, "n": int(rows.size)}
        | {k: float(m[k][i]) for k in PAIRED_METRICS}
        | {k: None if choice is None else choice[i][k] for k in CHOICE_KEYS}
        for i, v in enumerate(values)
    ]


def choose_on_dev(
    method: Method,
    values: Sequence[float],
    neutral: float,
    family: Family,
    data: StoreData,
    splits: Splits,
    rule: Rule,
    n_bins: int = 10,
) -> None:
    """Sweep ``values`` on dev and test and apply the rule on dev: sets ``method.param``, its
    sweep rows, and its dev/test (and power) logits."""
    z_dev, z_test = family(data, splits.dev, values), family(data, splits.test, values)
    d = splits.dev
    i, choice = choose(values, neutral, z_dev, data.label[d], data.mask[d], rule, n_bins)
    method.sweep = sweep_rows(method.name, values, "dev", z_dev, data, d, n_bins, choice)
    method.sweep += sweep_rows(method.name, values, "test", z_test, data, splits.test, n_bins)
    method.param = float(values[i])
    method.z_dev, method.z_test = np.asarray(z_dev[i]), np.asarray(z_test[i])
    vals = [float(v) for v in values]
    power = i if vals[i] != neutral else _nearest_move(vals, neutral)
    if power is not None:
        method.z_power, method.power_param = np.asarray(z_test[power]), vals[power]


def _nearest_move(values: list[float], neutral: float) -> int | None:
    """The non-neutral value closest to ``neutral`` (ties: the larger), None when there is none."""
    moves = [i for i, v in enumerate(values) if v != neutral]
    return min(moves, key=lambda i: (abs(values[i] - neutral), -values[i])) if moves else None


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


def _mde_columns(res: dict[str, dict[str, NDArray[np.float64]]] | None, j: int) -> dict[str, Any]:
    """d_<metric>_mde of every table metric from the j-th paired interval (nan: none)."""
    nan = float("nan")
    if res is None:
        return {f"d_{k}_mde": nan for k in TABLE_METRICS}
    return {
        f"d_{k}_mde": mde(float(res[k]["delta_lo"][j]), float(res[k]["delta_hi"][j]))
        for k in TABLE_METRICS
    }


def method_table(
    methods: Sequence[Method],
    base: NDArray[Any],
    data: StoreData,
    rows: NDArray[np.intp],
    *,
    n_bins: int = 10,
    n_boot: int = 1000,
    seed: int = 0,
) -> pl.DataFrame:
    """Test-split table: "none" (logits ``base`` (len(rows), K)) then each method at its chosen
    value, changes against its reference (*none* unless ``ref_test``), with paired intervals
    and the MDE at 80% power (:mod:`~analyze.interventions.steer_power`) of each change."""
    label, mask = data.label[rows], data.mask[rows]
    kw = {"n_bins": n_bins, "n_boot": n_boot, "seed": seed}

    def ref(m: Method) -> NDArray[Any]:
        return base if m.ref_test is None else np.asarray(m.ref_test)

    z = np.stack([base, *[np.asarray(m.z_test) for m in methods]])
    b = np.stack([base, *[ref(m) for m in methods]])
    res = paired_deltas(b, z, label, mask, **kw)
    powered = [j for j, m in enumerate(methods) if m.z_power is not None]
    power = None
    if powered and n_boot > 0:
        zp = np.stack([np.asarray(methods[j].z_power) for j in powered])
        power = paired_deltas(np.stack([ref(methods[j]) for j in powered]), zp, label, mask, **kw)
    nan = float("nan")
    out = [
        {"method": "none", "layer": data.layer, "param": nan, "n": int(rows.size)}
        | _metric_columns(res, 0)
        | _mde_columns(None, 0)
        | {"mde_param": nan}
    ]
    for j, m in enumerate(methods):
        at = powered.index(j) if j in powered else None
        out.append(
            {"method": m.name, "layer": m.layer, "param": m.param, "n": int(rows.size)}
            | _metric_columns(res, j + 1)
            | _mde_columns(power if at is not None else None, at or 0)
            | {"mde_param": m.power_param}
        )
    return pl.DataFrame(out)


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
            for k in TRANSFER_METRICS:
                r = res[k]
                row[f"{k}_base"], row[f"d_{k}"] = float(r["base"][j]), float(r["delta"][j])
                row[f"d_{k}_lo"], row[f"d_{k}_hi"] = (
                    float(r["delta_lo"][j]),
                    float(r["delta_hi"][j]),
                )
            out.append(row)
    return pl.DataFrame(out)
