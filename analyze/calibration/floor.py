"""The noise floor of binned ECE: the ECE a perfectly calibrated predictor shows at this sample.

Binned ECE is biased upwards: a predictor whose every confidence is exactly its probability of
being right still shows ECE > 0 on n examples, about sqrt(2 / π) sum_b sqrt(sum_{i in b}
c_i (1 - c_i)) / n for large bins. The floor is that expectation, with the same confidences and
the same bins:

    ece_floor = E[ ECE(conf, y) ],  y_i ~ Bernoulli(conf_i) independently,

by seeded simulation: ``n_sim`` draws of y from one uniform matrix U (n_sim, n),
y_i = [U_i < conf_i], each scored by the binned ECE of ``analyze.calibration._binning`` (equal-
width bins, same edges, conf == 1 in the last bin). One U serves every row of ``conf``
(common random numbers), so the floor of a layer or a group is a function of its examples'
confidences and their columns of U alone, whatever else is computed beside it. Its Monte Carlo
standard error is sd(ECE under the null) / sqrt(n_sim): with the default 200 draws, about 2-4 %
of the floor.

An ECE near its floor is as small as this sample can show; ECE minus the floor is not an unbiased
correction (the bias is not additive when the predictor is miscalibrated), so the floor is
reported beside the ECE, never subtracted from it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analyze.calibration._binning import bin_index
from analyze.calibration._checks import as_conf_correct, check_n_bins

FLOOR_SIMULATIONS = 200  # draws of y ~ Bernoulli(conf) per floor
_BLOCK_ELEMENTS = 1 << 23  # elements of one (draws, n) block of simulated outcomes


def floor_uniforms(n: int, n_sim: int = FLOOR_SIMULATIONS, seed: int = 0) -> NDArray[np.float64]:
    """The uniforms U (n_sim, n) of every floor computed with this seed for n examples."""
    if isinstance(n_sim, bool) or not isinstance(n_sim, (int, np.integer)) or n_sim < 1:
        raise ValueError(f"n_sim must be an integer >= 1, got {n_sim!r}")
    return np.random.default_rng([seed, 0xF100A]).random((int(n_sim), int(n)))


def ece_floor_from_uniforms(
    conf: NDArray[np.float64], uniforms: NDArray[np.float64], n_bins: int
) -> NDArray[np.float64]:
    """Mean binned ECE of y = [uniforms < conf] over the draws: conf (R, n), uniforms (S, n)
    -> (R,). Per row, the sums of y per bin are one product of the outcomes (S, n) with the
    row's one-hot bin design (n, M)."""
    rows, n = conf.shape
    s_total = uniforms.shape[0]
    bins = bin_index(conf, n_bins)
    out = np.empty(rows)
    step = max(1, _BLOCK_ELEMENTS // n)
    for r in range(rows):
        onehot = np.zeros((n, n_bins), np.float32)
        onehot[np.arange(n), bins[r]] = 1.0
        sum_conf = np.bincount(bins[r], weights=conf[r], minlength=n_bins)
        total = 0.0
        for lo in range(0, s_total, step):
            y = (uniforms[lo : lo + step] < conf[r]).astype(np.float32)
            total += float(np.abs(y @ onehot - sum_conf).sum())
        out[r] = total / (s_total * n)
    return out


def ece_floor(
    conf: ArrayLike,
    n_bins: int = 10,
    *,
    n_sim: int = FLOOR_SIMULATIONS,
    seed: int = 0,
    uniforms: ArrayLike | None = None,
) -> Any:
    """Expected binned ECE (``n_bins`` equal-width bins) of a perfectly calibrated predictor with
    these confidences: y_i ~ Bernoulli(conf_i), ``n_sim`` seeded draws (:func:`floor_uniforms`).

    conf: (..., n) in [0, 1]. ``uniforms``: (S, n) draws to use instead (a caller's common
    random numbers; ``n_sim`` and ``seed`` are then ignored). Returns a float for 1-D input,
    else an array (...)."""
    c, _ = as_conf_correct(conf, np.zeros(np.shape(conf), bool))
    m = check_n_bins(n_bins)
    n = c.shape[-1]
    u = floor_uniforms(n, n_sim, seed) if uniforms is None else np.asarray(uniforms, np.float64)
    if u.ndim != 2 or u.shape[1] != n or u.shape[0] < 1:
        raise ValueError(f"uniforms must have shape (n_sim, n) = (S, {n}), got {u.shape}")
    out = ece_floor_from_uniforms(c.reshape(-1, n), u, m)
    return float(out[0]) if c.ndim == 1 else out.reshape(c.shape[:-1])
