"""Bootstrap replicates of smooth ECE: the statistic of :mod:`analyze.calibration.smooth`
recomputed, bandwidth included, under every resample's draw counts.

A resample b weights example i by its draw count w_bi (``draw_weights``: the resamples of every
other interval with the same seed; a group's replicate uses the draw counts of its examples).
Its smECE is smECE_σ_b(w_b) at its own relplot bandwidth σ_b, re-selected in the resample as the
statistic prescribes. Per row (a layer, or a layer of a group):

1. the cosine coefficients A_k(b) = sum_i w_bi r_i cos(πk f_i) for k below SERIES_CUT / σ_low
   (σ_low = 0.7 x the row's point bandwidth) are one matrix product: of the draw counts with
   r_i cos(πk f_i) when the row has few examples, else with the residuals summed into cells
   of width σ_low / CELLS_PER_SIGMA_LOW (one sparse product; the cell's centre stands for its
   examples, which moves smECE by about 1e-4 of its value);
2. relplot's bandwidth, the smallest multiple j / 1024 (j >= 2) at which σ >= smECE_σ, found from
   the point bandwidth by two fixed-point steps σ <- smECE_σ, a secant step and a check of j
   and j - 1 (the bisection's result, since smECE_σ does not increase with σ), four
   evaluations per replicate instead of the bisection's ten;
3. smECE at σ_b. A replicate whose σ_b falls below σ_low (where the coefficients were cut) is
   recomputed by the point-estimate path (``smece_and_bandwidth`` with its weights).

Shapes: ``conf``, ``correct`` (R, n); ``weights`` (B, n) draw counts; ``sigma`` (R,);
replicates (B, R).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.fft
import scipy.sparse
from numpy.typing import NDArray

from analyze.calibration.smooth import (
    FAST_SERIES_CUT,
    smece_and_bandwidth,
    smooth_ece_from_coefficients,
)

LOW_FRACTION = 0.5  # coefficients and cells are sized for σ >= LOW_FRACTION x the point σ
CELLS_PER_SIGMA_LOW = 12
MAX_CELLS = 4096
_STEP = 1024  # relplot's bandwidths are multiples of 1 / 1024


def _coefficients(
    conf: NDArray[np.float64],
    resid: NDArray[np.float64],
    weights_t: NDArray[np.float32],
    s_low: NDArray[np.float64],
) -> NDArray[np.float32]:
    """Coefficients (B, R, K) of every resample and row, K for the smallest s_low (float32)."""
    rows, n = conf.shape
    n_k = math.ceil(FAST_SERIES_CUT / float(s_low.min())) + 1
    out = np.empty((weights_t.shape[1], rows, n_k), np.float32)
    cells = np.array(
        [scipy.fft.next_fast_len(min(MAX_CELLS, math.ceil(CELLS_PER_SIGMA_LOW / x))) for x in s_low]
    )
    direct = np.flatnonzero(n * 4 <= cells)
    if direct.size:  # few examples: w @ (r_i cos(πk f_i)) for these rows at once
        k = np.arange(n_k)
        design = resid[direct, :, None] * np.cos(np.pi * conf[direct, :, None] * k)  # (R', n, K)
        flat = np.moveaxis(design, 1, 0).reshape(n, -1).astype(np.float32)
        out[:, direct] = (weights_t.T @ flat).reshape(-1, direct.size, n_k)
    for r in np.setdiff1d(np.arange(rows), direct):
        e = scipy.fft.next_fast_len(max(int(cells[r]), n_k))  # the DCT gives k < e
        idx = np.minimum((conf[r] * e).astype(np.intp), e - 1)
        design_r = scipy.sparse.csc_matrix(
            (resid[r].astype(np.float32), (idx, np.arange(n))), shape=(e, n)
        )
        grid = np.ascontiguousarray((design_r @ weights_t).T)  # (B, cells): sums per cell
        # sum_j grid_j cos(πk (j + 1/2) / e): the DCT-II of the cell sums (halved)
        out[:, r] = scipy.fft.dct(grid, type=2, axis=1)[:, :n_k] / 2
    return out


def relplot_bandwidth_from(
    coef: NDArray[np.floating[Any]], total: NDArray[np.float64], guess: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(σ, smECE_σ) per row (R,): relplot's bandwidth found from a guess (module docstring,
    step 2). coef (R, K), total (R,), guess (R,)."""

    def ev(rows: NDArray[np.intp], sig: NDArray[np.float64]) -> NDArray[np.float64]:
        if rows.size == total.size:  # every row, in order: no copy
            return smooth_ece_from_coefficients(coef, total, sig, fast=True)
        return smooth_ece_from_coefficients(coef[rows], total[rows], sig, fast=True)

    every = np.arange(total.size)
    lo_bound = 2.0 / _STEP
    s0 = np.maximum(guess, lo_bound)
    v0 = ev(every, s0)
    s1 = np.maximum(v0, lo_bound)
    v1 = ev(every, s1)
    h0, h1 = v0 - s0, v1 - s1
    with np.errstate(divide="ignore", invalid="ignore"):
        s2 = s1 - h1 * (s1 - s0) / (h1 - h0)
    s2 = np.where(np.isfinite(s2) & (s2 > 0), s2, v1)
    j = np.clip(np.ceil(s2 * _STEP - 1e-9), 2, _STEP)
    value = np.full(total.size, np.nan)
    todo = every
    while todo.size:
        at = ev(todo, j[todo] / _STEP)
        below = j[todo] - 1
        at_below = np.where(below >= 2, 0.0, np.inf)  # σ = 1/1024 < 0.001: "too small" always
        check = np.flatnonzero(below >= 2)
        if check.size:
            at_below[check] = ev(todo[check], below[check] / _STEP)
        too_small = (j[todo] / _STEP < at) & (j[todo] < _STEP)
        lower_ok = (below >= 2) & ~(below / _STEP < at_below)
        j[todo] += np.where(too_small, 1, np.where(lower_ok, -1, 0))
        done = ~too_small & ~lower_ok
        value[todo[done]] = at[done]
        todo = todo[~done]
    return j / _STEP, value


def smece_replicates(
    conf: NDArray[np.float64],
    correct: NDArray[np.float64],
    weights: NDArray[Any],
    sigma: NDArray[np.float64],
    weights_t: NDArray[np.float32] | None = None,
) -> NDArray[np.float64]:
    """smECE of every resample and row, bandwidth re-selected: (B, R).

    ``weights`` (B, n): draw counts; ``sigma`` (R,): the rows' point bandwidths (from
    ``smece_and_bandwidth``), which size the coefficients and start the search; ``weights_t``:
    the same draw counts as float32 (n, B) when the caller has them."""
    w_t = np.ascontiguousarray(weights.T, np.float32) if weights_t is None else weights_t
    n_boot = weights.shape[0]
    rows = conf.shape[0]
    total = np.asarray(weights.sum(axis=1, dtype=np.int64), np.float64)
    out = np.full((n_boot, rows), np.nan)
    s_low = np.maximum(np.asarray(sigma, np.float64) * LOW_FRACTION, 2.0**-9)
    coef = _coefficients(conf, conf - correct, w_t, s_low)  # (B, R, K)
    ok = np.flatnonzero(total > 0)
    flat = (
        coef[ok].reshape(-1, coef.shape[2]) if ok.size < n_boot else coef.reshape(-1, coef.shape[2])
    )
    tot = np.repeat(total[ok], rows)
    sig, val = relplot_bandwidth_from(flat, tot, np.tile(np.asarray(sigma, np.float64), ok.size))
    out[ok] = val.reshape(ok.size, rows)
    low = np.flatnonzero(sig < np.tile(s_low, ok.size))
    for r in np.unique(low % rows):  # below where the coefficients were cut: the exact path
        reps = ok[low[low % rows == r] // rows]
        out[reps, r] = _exact(conf[r], correct[r], weights[reps])
    return out


def _exact(conf: NDArray[np.float64], correct: NDArray[np.float64], weights: NDArray[Any]) -> Any:
    """smECE of a few resamples of one row by the point-estimate path, all at once."""
    m = weights.shape[0]
    return smece_and_bandwidth(
        np.broadcast_to(conf, (m, conf.size)), np.broadcast_to(correct, (m, conf.size)), weights
    )[0]
