"""The one rule that chooses every steering method's parameter on dev (methods.md section 6).

Every method has the same budget, one scalar: α for a direction, T for temperature scaling, β
for the null-space scaling. On dev, among the values that **keep accuracy**, the rule takes the
one with the smallest selection objective (``select``: NLL by default, or ECE); ties go to the
value closest to the neutral one (α = 0, β = 1, T = 1).

A value keeps accuracy when the lower bound of its paired Δaccuracy interval against the neutral
value on dev (95% percentile bootstrap over the dev examples, the same resamples for every
value) is above −``margin`` (default 0.02): a non-inferiority test by interval, which at small n
cannot reject a value for a loss smaller than one answer, as a fixed tolerance on the point
estimate did. The neutral value always keeps accuracy. The deprecated ``max_drop`` replaces the
interval by that fixed rule (point Δaccuracy ≥ −max_drop).

Temperature scaling never changes which option wins (T > 0), so its accuracy is always kept;
T is the minimiser of the dev objective over T > 0 in TEMPERATURE_BOUNDS (NLL: the usual
fit, :func:`~analyze.calibration.fit_temperature`; ECE: the smallest ECE on a log-spaced grid of
TEMPERATURE_GRID values). α and β are chosen on their grids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import NDArray

from analyze.calibration import (
    TEMPERATURE_BOUNDS,
    fit_temperature,
    logit_metrics,
    logit_terms,
    mean_delta_ci,
)

Select = Literal["nll", "ece"]
SELECT: tuple[Select, ...] = get_args(Select)
ACCURACY_MARGIN = 0.02
RULE_BOOT = 1000  # resamples of the dev interval when the run computes none (n_boot = 0)
TEMPERATURE_GRID = 401


@dataclass(frozen=True)
class Rule:
    """How a parameter is chosen on dev: the objective, the accuracy margin (or the deprecated
    fixed drop), and the bootstrap of the dev Δaccuracy interval."""

    select: Select = "nll"
    margin: float = ACCURACY_MARGIN
    max_drop: float | None = None
    n_boot: int = RULE_BOOT
    seed: int = 0
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if self.select not in SELECT:
            raise ValueError(f"select must be one of {SELECT}, got {self.select!r}")
        if not self.margin >= 0:
            raise ValueError(f"the accuracy margin must be >= 0, got {self.margin}")

    def describe(self) -> str:
        """One sentence for reports."""
        what = {"nll": "the smallest NLL", "ece": "the smallest ECE"}[self.select]
        if self.max_drop is not None:
            keep = (
                f"accuracy at most {self.max_drop:g} below the neutral value's (the deprecated "
                "fixed rule, --max-accuracy-drop)"
            )
        else:
            keep = (
                f"the lower bound of the paired Δaccuracy interval against the neutral value "
                f"above −{self.margin:g} ({1 - self.alpha:.0%} bootstrap, {self.n_boot} resamples)"
            )
        return f"{what} on dev among the values with {keep}"

    def record(self) -> dict[str, Any]:
        return {
            "select": self.select,
            "accuracy_margin": self.margin,
            "max_accuracy_drop": self.max_drop,
            "accuracy_rule": "fixed_drop" if self.max_drop is not None else "interval",
            "n_boot": self.n_boot,
            "seed": self.seed,
            "alpha": self.alpha,
            "rule": self.describe(),
        }


def choose(
    values: Sequence[float],
    neutral: float,
    logits: NDArray[Any],
    label: NDArray[Any],
    mask: NDArray[np.bool_],
    rule: Rule,
    n_bins: int = 10,
) -> tuple[int, list[dict[str, Any]]]:
    """Index of the value ``rule`` chooses from dev ``logits`` (A, n, K), one row per value of
    ``values``, and per value its record: the objective, Δaccuracy against ``neutral`` (which
    must be in ``values``) with the lower bound of its interval, and whether it keeps accuracy."""
    vals = [float(v) for v in values]
    i0 = vals.index(float(neutral))
    z = np.asarray(logits, np.float64)
    objective = logit_metrics(z, label, mask, n_bins)[rule.select]
    correct = logit_terms(z, label, mask)["accuracy"]
    d, lo, _ = mean_delta_ci(
        np.broadcast_to(correct[i0], correct.shape),
        correct,
        n_boot=rule.n_boot,
        seed=rule.seed,
        alpha=rule.alpha,
    )
    if rule.max_drop is not None:
        keeps = d >= -rule.max_drop - 1e-12
    else:
        keeps = lo > -rule.margin
    keeps[i0] = True
    order = sorted(
        np.flatnonzero(keeps), key=lambda i: (float(objective[i]), abs(vals[i] - neutral))
    )
    records = [
        {
            "objective": float(objective[i]),
            "d_accuracy": float(d[i]),
            "d_accuracy_lo": float(lo[i]),
            "keeps_accuracy": bool(keeps[i]),
        }
        for i in range(len(vals))
    ]
    return int(order[0]), records


def fit_temperature_by(
    logits: NDArray[Any], label: NDArray[Any], mask: NDArray[np.bool_], rule: Rule, n_bins: int = 10
) -> float:
    """T > 0 minimising the dev objective of softmax(logits / T), logits (n, K): NLL by the usual
    bounded search, ECE on TEMPERATURE_GRID log-spaced values (ties: closest to T = 1)."""
    if rule.select == "nll":
        return fit_temperature(logits, label, mask)
    grid = np.geomspace(*TEMPERATURE_BOUNDS, TEMPERATURE_GRID)
    z = np.asarray(logits, np.float64)[None] / grid[:, None, None]
    ece = logit_metrics(z, label, mask, n_bins)["ece"]
    best = min(range(grid.size), key=lambda i: (float(ece[i]), abs(float(np.log(grid[i])))))
    return float(grid[best])
