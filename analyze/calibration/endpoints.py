"""The endpoints reported beside every ECE (issue 17): its noise floor, smooth ECE with a
bootstrap interval, the signed gap, AUROC and the Brier decomposition, for rows of examples (the
layers of a store, or the layers of one group).

Each is one function of :mod:`~analyze.calibration.floor`, :mod:`~analyze.calibration.smooth`,
:mod:`~analyze.calibration.smooth_bootstrap` or :mod:`~analyze.calibration.discrimination`
applied to the rows' confidence and correctness; this module only runs them together. Shapes:
``conf``, ``correct`` (R, n); ``uniforms`` (S, n) (the floor's draws for these n examples);
``weights`` (B, n) draw counts; every result (R,).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from analyze.calibration._bootstrap import nan_interval
from analyze.calibration.discrimination import auroc, brier_decomposition
from analyze.calibration.floor import ece_floor_from_uniforms
from analyze.calibration.smooth import smece_and_bandwidth
from analyze.calibration.smooth_bootstrap import smece_replicates

ENDPOINTS = (
    "ece_floor",
    "smece",
    "smece_lo",
    "smece_hi",
    "gap",
    "auroc",
    "brier_reliability",
    "brier_resolution",
)


def smece_interval(
    conf: NDArray[np.float64],
    correct: NDArray[np.float64],
    sigma: NDArray[np.float64],
    weights: NDArray[Any],
    weights_t: NDArray[np.float32] | None = None,
    alpha: float = 0.05,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Percentile bootstrap interval (lo, hi), each (R,), of smECE over the resamples' draw
    counts ``weights`` (B, n), bandwidth re-selected in each (``smece_replicates``)."""
    reps = smece_replicates(conf, correct, weights, sigma, weights_t)
    lo, hi = nan_interval(reps, [alpha / 2, 1 - alpha / 2])
    return lo, hi


def endpoint_rows(
    conf: NDArray[np.float64],
    correct: NDArray[np.float64],
    *,
    n_bins: int,
    uniforms: NDArray[np.float64] | None = None,
    ece_floor: NDArray[np.float64] | None = None,
    weights: NDArray[Any] | None = None,
    weights_t: NDArray[np.float32] | None = None,
    alpha: float = 0.05,
    smece_point: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None,
) -> dict[str, NDArray[np.float64]]:
    """Every column of ENDPOINTS for each row; ``smece_lo``/``smece_hi`` are nan without
    ``weights``. ``ece_floor`` (R,) and ``smece_point`` ((smECE, σ*), each (R,)) when the caller
    has them (``floor_of_cells`` and ``smece_of_groups`` compute many groups' at once), else
    from ``uniforms`` and the rows."""
    if ece_floor is None:
        if uniforms is None:
            raise ValueError("endpoint_rows needs the floor's uniforms or the ece_floor itself")
        ece_floor = ece_floor_from_uniforms(np.asarray(conf, np.float64), uniforms, n_bins)
    conf = np.asarray(conf, np.float64)
    correct = np.asarray(correct, np.float64)
    value, sigma = smece_and_bandwidth(conf, correct) if smece_point is None else smece_point
    value, sigma = np.atleast_1d(value), np.atleast_1d(sigma)
    nan = np.full(value.shape, np.nan)
    lo, hi = nan, nan
    if weights is not None:
        lo, hi = smece_interval(conf, correct, sigma, weights, weights_t, alpha)
    dec = brier_decomposition(conf, correct, n_bins)
    return {
        "ece_floor": np.asarray(ece_floor, np.float64),
        "smece": value,
        "smece_lo": lo,
        "smece_hi": hi,
        "gap": conf.mean(axis=-1) - correct.mean(axis=-1),
        "auroc": np.atleast_1d(auroc(conf, correct)),
        "brier_reliability": np.atleast_1d(dec["reliability"]),
        "brier_resolution": np.atleast_1d(dec["resolution"]),
    }
