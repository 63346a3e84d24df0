"""The pieces of a steering evaluation: method families and the dev choice (the tables are
:mod:`~analyze.interventions.steer_tables`).

A *family* maps (store data, rows, parameter values) to answer logits (A, n, K); a
:class:`Method` is a family with its parameter chosen on dev by the run's rule
(:mod:`~analyze.interventions.steer_select`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from analyze.calibration import PAIRED_METRICS, logit_metrics
from analyze.interventions.nullspace import ablate
from analyze.interventions.steer_data import Splits, StoreData
from analyze.interventions.steer_select import Rule, choose

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
