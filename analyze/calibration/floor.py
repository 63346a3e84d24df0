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
import scipy.sparse
from numpy.typing import ArrayLike, NDArray

from analyze.calibration._binning import bin_index
from analyze.calibration._checks import as_conf_correct, check_n_bins

FLOOR_SIMULATIONS = 200  # draws of y ~ Bernoulli(conf) per floor
_BLOCK_ELEMENTS = 1 << 23  # elements of one block of simulated outcomes
_PER_ROW_FROM = 2048  # examples from which a row's bin sums are a matrix product


def floor_uniforms(n: int, n_sim: int = FLOOR_SIMULATIONS, seed: int = 0) -> NDArray[np.float64]:
    """The uniforms U (n_sim, n) of every floor computed with this seed for n examples."""
    if isinstance(n_sim, bool) or not isinstance(n_sim, (int, np.integer)) or n_sim < 1:
        raise ValueError(f"n_sim must be an integer >= 1, got {n_sim!r}")
    return np.random.default_rng([seed, 0xF100A]).random((int(n_sim), int(n)))


def ece_floor_from_uniforms(
    conf: NDArray[np.float64], uniforms: NDArray[np.float64], n_bins: int
) -> NDArray[np.float64]:
    """Mean binned ECE of y = [uniforms < conf] over the draws: conf (R, n), uniforms (S, n)
    -> (R,). The sums of y per (draw, row, bin) are one bincount per block of draws (few
    examples) or, per row, one product of the outcomes (S, n) with the row's one-hot bin
    design (n, M)."""
    rows, n = conf.shape
    s_total = uniforms.shape[0]
    bins = bin_index(conf, n_bins)
    flat = np.arange(rows)[:, None] * n_bins + bins  # (R, n)
    sum_conf = np.bincount(flat.ravel(), weights=conf.ravel(), minlength=rows * n_bins)
    sum_conf = sum_conf.reshape(rows, n_bins)
    total = np.zeros(rows)
    if n < _PER_ROW_FROM:  # all rows at once
        step = max(1, _BLOCK_ELEMENTS // (rows * n))
        for lo in range(0, s_total, step):
            y = uniforms[lo : lo + step, None, :] < conf[None]  # (S', R, n)
            sims = y.shape[0]
            idx = (np.arange(sims)[:, None, None] * rows * n_bins + flat[None]).ravel()
            sums = np.bincount(idx, weights=y.ravel(), minlength=sims * rows * n_bins)
            total += np.abs(sums.reshape(sims, rows, n_bins) - sum_conf).sum(axis=(0, 2))
        return total / (s_total * n)
    step = max(1, _BLOCK_ELEMENTS // n)
    for r in range(rows):
        onehot = np.zeros((n, n_bins), np.float32)
        onehot[np.arange(n), bins[r]] = 1.0
        for lo in range(0, s_total, step):
            y = (uniforms[lo : lo + step] < conf[r]).astype(np.float32)
            total[r] += float(np.abs(y @ onehot - sum_conf[r]).sum())
    return total / (s_total * n)


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


def cell_floor_sums(
    conf: NDArray[np.float64],
    uniforms: NDArray[np.float64],
    cells: NDArray[np.intp],
    n_cells: int,
    n_bins: int,
) -> tuple[NDArray[np.int32], NDArray[np.float64]]:
    """The floor's simulated outcomes summed per (draw, row, cell, bin), (S, R, C, M), and the
    confidences summed per (row, cell, bin), (R, C, M): conf (R, n), uniforms (S, n), cells (n,)
    in 0..C-1 (e.g. the subject of each example).

    Any group of examples that is a union of cells has its floor from these sums alone
    (:func:`floor_of_cells`): the layers' (every cell), each subject's, each category's, from
    one simulation instead of one per table."""
    rows, n = conf.shape
    s_total = uniforms.shape[0]
    u_t = np.ascontiguousarray(uniforms.T)  # (n, S): an example's draws are one row
    size = n_cells * n_bins
    y_sums = np.empty((rows, size, s_total), np.int32)
    c_sums = np.empty((rows, size))
    for r in range(rows):
        key = cells * n_bins + bin_index(conf[r], n_bins)
        design = scipy.sparse.csc_matrix(
            (np.ones(n, np.float32), (key, np.arange(n))), shape=(size, n)
        )
        y = (u_t < conf[r, :, None]).astype(np.float32)  # (n, S) simulated outcomes
        y_sums[r] = np.rint(design @ y)  # counts: exact in float32 below 2**24
        c_sums[r] = np.bincount(key, weights=conf[r], minlength=size)
    shape = (rows, n_cells, n_bins)
    return np.moveaxis(y_sums, 2, 0).reshape(s_total, *shape), c_sums.reshape(shape)


def floor_of_cells(
    y_sums: NDArray[np.int32], c_sums: NDArray[np.float64], members: NDArray[np.intp], n: int
) -> NDArray[np.float64]:
    """The ECE floor (R,) of the examples in the cells ``members`` (n examples in all), from
    :func:`cell_floor_sums`: the mean over draws of sum_b |Y_b - C_b| / n."""
    y = y_sums[:, :, members].sum(axis=2)  # (S, R, M)
    c = c_sums[:, members].sum(axis=1)  # (R, M)
    return np.abs(y - c).sum(axis=(0, 2)) / (y_sums.shape[0] * n)
