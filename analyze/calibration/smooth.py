"""Smooth ECE (smECE; Błasiok & Nakkiran 2023, "Smooth ECE: principled reliability diagrams via
kernel smoothing"), the binning-free calibration error, as apple/ml-calibration's relplot defines
and computes it (``relplot.metrics.smECE``, relplot 1.0.3).

Definition. Confidences f_i in [0, 1], correctness y_i in {0, 1}, weights w_i >= 0 (1 for the
statistic itself, bootstrap draw counts for a resample), residuals r_i = f_i - y_i, W = sum w_i:

    smECE_σ = (1 / W) ∫_0^1 | sum_i w_i r_i K_σ(t, f_i) | dt,

K_σ the Gaussian kernel of width σ reflected at 0 and 1, K_σ(t, f) = sum over integers m of
φ_σ(t - f - 2m) + φ_σ(t + f - 2m), so that every example keeps unit mass on [0, 1]. This is
∫ |r̂_σ(t)| δ̂_σ(t) dt, with r̂_σ the kernel regression of the residual on the confidence and δ̂_σ
the kernel density of the confidences (relplot: ``np.sum(np.abs(rs) * density) /
np.sum(density)``). smECE is smECE_σ at relplot's bandwidth σ*: the fixed point σ = smECE_σ (the
paper's choice), located as relplot's ``search_param`` does, by 10 halvings of [0, 1] keeping
the upper end of the bracket, a bandwidth below 0.001 counting as "too small". smECE_σ does not
increase with σ (the reflected kernels form a heat semigroup, an L1 contraction), so the rule
returns the smallest multiple of 2**-10 that is at least the fixed point (and at least 2**-9).

Computation. The reflected kernel is the heat kernel on [0, 1] with reflecting ends:
K_σ(t, f) = 1 + 2 sum_{k >= 1} exp(-π²k²σ²/2) cos(πkt) cos(πkf). So

    S_σ(t) = sum_i w_i r_i K_σ(t, f_i) = A_0 + 2 sum_{k >= 1} exp(-π²k²σ²/2) A_k cos(πkt),
    A_k = sum_i w_i r_i cos(πk f_i).

The A_k come from the weighted residuals binned linearly onto GRID_NODES equally spaced nodes
(relplot's ``smooth_round_to_grid`` on its 1,001 nodes), by one FFT (a DCT-I); the series is cut
where exp(-π²k²σ²/2) < 1e-10 and S_σ is evaluated at the midpoints of at least CELLS_PER_SIGMA / σ
equal cells (the midpoint rule integrates the cosine series exactly; only the kinks of |S_σ| at
its zeros cost anything). relplot instead convolves a 1,001-node grid with a kernel reflected
once at each end and sums |S| over max(200, 10/σ) nodes; on the data of
``tests/analyze/calibration/test_smooth.py`` the two agree to 1e-4 (see there).

Shapes: ``conf``, ``correct`` (..., n); ``weights`` (..., n) or (n,), or None; results (...).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analyze.calibration._checks import as_conf_correct

GRID_NODES = 2049  # linear-binning nodes on [0, 1] (spacing 1/2048)
BANDWIDTH_STEPS = 10  # relplot's search_param(refine=10): σ* is a multiple of 2**-10
BANDWIDTH_EPS = 0.001  # relplot's smECE(eps=0.001): a smaller bandwidth is never chosen
CELLS_PER_SIGMA = 8  # midpoint-rule cells per bandwidth (at least MIN_CELLS): error < 2e-4
MIN_CELLS = 128
SERIES_CUT = (
    math.sqrt(2 * math.log(1e10)) / math.pi
)  # exp(-π²k²σ²/2) < 1e-10 for k > SERIES_CUT / σ
FAST_SERIES_CUT = math.sqrt(2 * math.log(1e6)) / math.pi  # bootstrap replicates: 1e-6
FAST_CELLS_PER_SIGMA = 4
_ROWS_PER_BLOCK = 1 << 22  # elements of one (rows, cells) block of the evaluation


def residual_coefficients(
    conf: NDArray[np.float64],
    resid: NDArray[np.float64],
    n_grid: int = GRID_NODES,
) -> NDArray[np.float64]:
    """Cosine coefficients A_k (k = 0..n_grid-1) of the measure sum_i resid_i δ(f_i), binned
    linearly onto n_grid nodes j / (n_grid - 1): conf, resid (R, n) -> (R, n_grid).

    ``resid`` holds w_i r_i (the weighted residuals)."""
    rows, _ = conf.shape
    pos = conf * (n_grid - 1)
    lo = np.clip(np.floor(pos).astype(np.intp), 0, n_grid - 2)
    frac = pos - lo
    flat = (np.arange(rows)[:, None] * n_grid + lo).ravel()
    size = rows * n_grid
    grid = np.bincount(flat, weights=(resid * (1 - frac)).ravel(), minlength=size).astype(float)
    grid += np.bincount(flat + 1, weights=(resid * frac).ravel(), minlength=size)
    return grid_coefficients(grid.reshape(rows, n_grid))


def grid_coefficients(grid: NDArray[np.float64]) -> NDArray[np.float64]:
    """A_k = sum_j grid_j cos(πk j / (N - 1)), k = 0..N-1, for node masses grid (R, N): a DCT-I,
    as the real FFT of the even extension (g_0..g_{N-1}, g_{N-2}..g_1)."""
    ext = np.concatenate([grid, grid[:, -2:0:-1]], axis=1)
    f = np.fft.rfft(ext, axis=1).real
    sign = np.where(np.arange(grid.shape[1]) % 2 == 0, 1.0, -1.0)
    return (f + grid[:, :1] + sign * grid[:, -1:]) / 2


def smooth_ece_from_coefficients(
    coef: NDArray[np.floating[Any]],
    total: NDArray[np.float64],
    sigma: NDArray[np.float64],
    *,
    fast: bool = False,
) -> NDArray[np.float64]:
    """smECE_σ of R rows from their coefficients (R, >= K), total weights W (R,) and bandwidths
    σ (R,), each row at its own σ. Rows are evaluated in groups of σ within a factor sqrt(2)
    (:func:`_basis`: the coefficients and cells the group's lower end needs). ``fast``: the
    precision of a bootstrap replicate (float32 products, the series cut where its terms fall
    below 1e-6, FAST_CELLS_PER_SIGMA cells: about 1e-3 of the value) instead of the point
    estimate's (float64, 1e-10, CELLS_PER_SIGMA: 2e-4)."""
    out = np.empty(sigma.shape)
    level = np.floor(2 * np.log2(sigma)).astype(int)
    for lv in np.unique(level):
        rows = np.flatnonzero(level == lv)
        basis = _basis(int(lv), coef.shape[1], fast)
        n_k, cells = basis.shape
        k = np.arange(n_k)
        step = max(1, _ROWS_PER_BLOCK // cells)
        for lo in range(0, rows.size, step):
            r = rows[lo : lo + step]
            damp = np.exp(-0.5 * (np.pi * k[None, :] * sigma[r, None]) ** 2)
            s = (coef[r, :n_k] * damp).astype(basis.dtype, copy=False) @ basis
            out[r] = np.abs(s).mean(axis=1, dtype=np.float64) / total[r]
    return out


@functools.lru_cache(maxsize=64)
def _basis(level: int, max_k: int, fast: bool) -> NDArray[Any]:
    """(K, T) matrix of c_k cos(πk t_m), c_0 = 1 and c_k = 2, at the midpoints t_m of T equal
    cells, for bandwidths σ >= 2**(level / 2): K = min(max_k, cut / σ + 1) coefficients and
    T = max(MIN_CELLS, cells per σ / σ) cells (``fast``: see smooth_ece_from_coefficients).
    Cached, read-only."""
    s_min = 2.0 ** (level / 2)
    cut, per_sigma = (
        (FAST_SERIES_CUT, FAST_CELLS_PER_SIGMA) if fast else (SERIES_CUT, CELLS_PER_SIGMA)
    )
    n_k = min(max_k, math.ceil(cut / s_min) + 1)
    cells = max(MIN_CELLS // 2 if fast else MIN_CELLS, math.ceil(per_sigma / s_min))
    t = (np.arange(cells) + 0.5) / cells
    basis = np.cos(np.pi * np.arange(n_k)[:, None] * t[None, :])
    basis[1:] *= 2.0
    basis = basis.astype(np.float32 if fast else np.float64)
    basis.flags.writeable = False
    return basis


def relplot_bandwidth(coef: NDArray[np.float64], total: NDArray[np.float64]) -> NDArray[np.float64]:
    """relplot's bandwidth of each row (R,): the bisection of ``search_param(check_smooth_ece,
    start=1, refine=10)``, run for all rows at once. The predicate "σ is too small" is σ < 0.001
    or σ < smECE_σ; the result is the upper end of the final bracket."""
    rows = total.shape[0]
    start, end = np.ones(rows), np.zeros(rows)
    for _ in range(BANDWIDTH_STEPS):
        mid = (start + end) / 2
        small = mid < BANDWIDTH_EPS
        ev = np.flatnonzero(~small)
        if ev.size:
            small[ev] = mid[ev] < smooth_ece_from_coefficients(coef[ev], total[ev], mid[ev])
        end = np.where(small, mid, end)
        start = np.where(small, start, mid)
    return start


def _prepare(
    conf: ArrayLike, correct: ArrayLike, weights: ArrayLike | None
) -> tuple[NDArray[np.float64], NDArray[np.float64], tuple[int, ...]]:
    """Coefficients (R, GRID_NODES) and total weights (R,) of the rows, and the leading shape."""
    c, y = as_conf_correct(conf, correct)
    lead = c.shape[:-1]
    given = np.ones_like(c) if weights is None else np.asarray(weights, np.float64)
    try:
        w = np.broadcast_to(given, c.shape)
    except ValueError:
        raise ValueError(
            f"weights of shape {given.shape} do not broadcast to conf's {c.shape}"
        ) from None
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise ValueError("weights must be finite and >= 0")
    n = c.shape[-1]
    c2, r2, w2 = c.reshape(-1, n), (c - y).reshape(-1, n), w.reshape(-1, n)
    total = w2.sum(axis=1)
    if (total <= 0).any():
        raise ValueError("every row needs a positive total weight")
    return residual_coefficients(c2, w2 * r2), total, lead


def _shaped(x: NDArray[np.float64], lead: tuple[int, ...]) -> Any:
    return float(x[0]) if lead == () else x.reshape(lead)


def smooth_ece(
    conf: ArrayLike, correct: ArrayLike, sigma: float, weights: ArrayLike | None = None
) -> Any:
    """smECE_σ at a fixed bandwidth ``sigma`` (> 0; relplot's ``smECE_sigma``).

    conf, correct: (..., n); weights: (..., n), (n,) or None (all 1). Returns a float for 1-D
    input, else an array (...)."""
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    coef, total, lead = _prepare(conf, correct, weights)
    return _shaped(smooth_ece_from_coefficients(coef, total, np.full(total.shape, sigma)), lead)


def smece_and_bandwidth(
    conf: ArrayLike, correct: ArrayLike, weights: ArrayLike | None = None
) -> tuple[Any, Any]:
    """(smECE, σ*): the smooth ECE at relplot's bandwidth σ*, and σ*. Shapes as ``smooth_ece``."""
    coef, total, lead = _prepare(conf, correct, weights)
    sigma = relplot_bandwidth(coef, total)
    value = smooth_ece_from_coefficients(coef, total, sigma)
    return _shaped(value, lead), _shaped(sigma, lead)


def smece(conf: ArrayLike, correct: ArrayLike, weights: ArrayLike | None = None) -> Any:
    """Smooth ECE at relplot's bandwidth (``relplot.smECE``); conf, correct (..., n) -> (...)."""
    return smece_and_bandwidth(conf, correct, weights)[0]


def smece_of_groups(
    conf: NDArray[np.float64], correct: NDArray[np.float64], groups: Sequence[NDArray[np.intp]]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(smECE, σ*), each (G, R), of every group of examples (columns ``groups[g]`` of conf,
    correct (R, n)) in one bandwidth search: the same values as ``smece_and_bandwidth`` of
    each group alone."""
    resid = conf - correct
    coef = np.concatenate([residual_coefficients(conf[:, g], resid[:, g]) for g in groups])
    total = np.repeat(np.array([g.size for g in groups], np.float64), conf.shape[0])
    sigma = relplot_bandwidth(coef, total)
    value = smooth_ece_from_coefficients(coef, total, sigma)
    shape = (len(groups), conf.shape[0])
    return value.reshape(shape), sigma.reshape(shape)
