"""The linear shortcut (Din et al. 2023), closed form, ridge-shrunk towards the identity.

Per depth l and fold f: the translator h -> h + h B + b maps the depth's residual to an estimate
of the last depth's pre-norm residual, read out through the stored final norm and unembedding.
With the design D = [h, c 1] (c = the training residuals' root mean square, so the constant
column is scaled like the others) and the target R = h_last - h (the change still to come), ridge
regression

    [B; b / c] = argmin ||R - D W||^2 + lambda ||W||^2 = (D^T D + lambda I)^-1 D^T R

shrinks B and b towards 0, i.e. the translator towards the identity: lambda = inf is exactly
the logit lens. lambda is chosen per depth and fold by inner cross-validation on the fold's
training examples: exact leave-one-out residuals, e_i / (1 - H_ii), from one eigendecomposition
of the training Gram matrix D^T D = V diag(s^2) V^T, after which every lambda costs only products
with V (the SVD of D, without forming U). The grid is PENALTY_GRID times the mean eigenvalue,
plus inf; the leave-one-out error is averaged over LOO_ROWS seeded training examples (exact for
each of them; a subsample keeps the per-lambda cost small).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import eigh

PENALTY_GRID = tuple(float(x) for x in 10.0 ** np.arange(-4.0, 3.01, 0.5))  # x mean eigenvalue
LOO_ROWS = 512


@dataclass(frozen=True)
class FoldStats:
    """Sufficient statistics of one depth, per fold, with an unscaled constant column (design
    [x, 1]): ``gram`` (F, p, p) = D_f^T D_f, ``cross`` (F, p, d) = D_f^T R_f (p = d + 1),
    ``sumsq`` (F,) the sum of x^2 and ``count`` (F,) the rows of each fold. A fold's fit adds
    the other folds' statistics (never subtracts its own from a total: an example's data
    cannot reach its own fold's translator, not even through rounding)."""

    gram: NDArray[np.float64]
    cross: NDArray[np.float64]
    sumsq: NDArray[np.float64]
    count: NDArray[np.int64]

    def training(self, f: int) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
        """(D^T D, D^T R, c) of every fold but ``f``, with the constant column scaled by
        c = the root mean square of the training residuals."""
        others = [g for g in range(self.gram.shape[0]) if g != f]
        gram, cross = self.gram[others[0]].copy(), self.cross[others[0]].copy()
        for g in others[1:]:
            gram += self.gram[g]
            cross += self.cross[g]
        d = cross.shape[1]
        c = float(np.sqrt(self.sumsq[others].sum() / (self.count[others].sum() * d)))
        gram[:, d] *= c  # the constant column and row scaled in place (the corner by c^2)
        gram[d, :] *= c
        cross[d, :] *= c
        return gram, cross, c


@dataclass(frozen=True)
class ShortcutFit:
    """One fold's translator at one depth: ``weight`` (d, d) = B, ``bias`` (d,) = b, the
    chosen ``penalty`` (absolute; inf = identity), ``relative`` (penalty / mean eigenvalue) and
    the leave-one-out mean squared error per coordinate at each grid point (``loo``, the last
    entry being inf)."""

    weight: NDArray[np.float32]
    bias: NDArray[np.float32]
    penalty: float
    relative: float
    loo: NDArray[np.float64]


def design(x: NDArray[np.floating], scale: float) -> NDArray[np.float64]:
    """D = [x, scale * 1]: (n, d) -> (n, d + 1) float64."""
    return np.hstack([np.asarray(x, np.float64), np.full((x.shape[0], 1), scale)])


def fold_stats(
    x: NDArray[np.floating], target: NDArray[np.floating], folds: NDArray[np.int64], k: int
) -> FoldStats:
    """Gram and cross products of every fold at one depth (one pass over the rows).

    ``x``: (n, d) residuals at the depth, ``target``: (n, d) at the last depth."""
    p, d = x.shape[1] + 1, x.shape[1]
    gram, cross = np.empty((k, p, p)), np.empty((k, p, d))
    sumsq, count = np.empty(k), np.empty(k, np.int64)
    for f in range(k):
        rows = folds == f
        dm = design(x[rows], 1.0)
        gram[f] = dm.T @ dm
        cross[f] = dm.T @ (np.asarray(target[rows], np.float64) - dm[:, :d])
        sumsq[f], count[f] = float(np.sum(dm[:, :d] ** 2)), int(rows.sum())
    return FoldStats(gram, cross, sumsq, count)


def fit_fold(
    stats: FoldStats,
    f: int,
    x_loo: NDArray[np.floating],
    r_loo: NDArray[np.floating],
    grid: tuple[float, ...] = PENALTY_GRID,
    x_train: NDArray[np.floating] | None = None,
) -> ShortcutFit:
    """The translator of fold ``f`` (fitted on every other fold), penalty by leave-one-out.

    ``x_loo``, ``r_loo``: (m, d) residuals and targets minus residuals of the training examples
    whose leave-one-out error chooses the penalty (they must be training examples of ``f``).
    ``x_train``: (n_train, d) the training residuals themselves: with fewer rows than p = d + 1
    the decomposition is the SVD of the training design (rank n_train) instead of the
    eigendecomposition of its p x p Gram matrix (the same V and s^2 on the rank, far cheaper).
    """
    gram, cross, scale = stats.training(f)
    p = gram.shape[0]
    if x_train is not None and x_train.shape[0] < p:
        _, s, vt = np.linalg.svd(design(x_train, scale), full_matrices=False)
        s2, v = s * s, vt.T
        mean_eig = float(s2.sum() / p)  # the Gram's p eigenvalues, p - n_train of them 0
    else:
        s2, v = eigh(gram, check_finite=False, driver="evd", overwrite_a=True)
        s2 = np.maximum(s2, 0.0)
        mean_eig = float(s2.mean())
    z = v.T @ cross  # (r, d)
    del gram, cross  # (p, p) and (p, d) float64 each: two folds are fitted at once
    lambdas = np.array([*(g * mean_eig for g in grid), np.inf])
    loo = _loo_errors(v, s2, z, design(x_loo, scale), np.asarray(r_loo, np.float64), lambdas)
    best = int(np.flatnonzero(loo <= loo.min() * (1 + 1e-12))[-1])  # ties: the larger penalty
    z /= (s2 + lambdas[best])[:, None]
    w = v @ z
    d = z.shape[1]
    return ShortcutFit(
        weight=w[:d].astype(np.float32),
        bias=(w[d] * scale).astype(np.float32),
        penalty=float(lambdas[best]),
        relative=float(lambdas[best] / mean_eig) if mean_eig > 0 else float("inf"),
        loo=loo,
    )


def solve(stats: FoldStats, f: int, penalty: float) -> tuple[NDArray[np.float64], ...]:
    """(B, b) of fold ``f`` at a fixed ``penalty`` (inf: zeros, the identity), by a direct
    solve: the reference the eigendecomposition path is tested against."""
    gram, cross, scale = stats.training(f)
    d = cross.shape[1]
    if np.isinf(penalty):
        return np.zeros((d, d)), np.zeros(d)
    w = np.asarray(np.linalg.solve(gram + penalty * np.eye(d + 1), cross), np.float64)
    return w[:d], w[d] * scale


def _loo_errors(
    v: NDArray[np.float64],
    s2: NDArray[np.float64],
    z: NDArray[np.float64],
    dm: NDArray[np.float64],
    r: NDArray[np.float64],
    lambdas: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Leave-one-out mean squared error per coordinate of the rows ``dm`` (m, p), targets ``r``
    (m, d), for every penalty: e_i = r_i - (P_i * g) z with P = dm v and g = 1 / (s^2 + lambda),
    H_ii = sum_j P_ij^2 g_j, error ||e_i||^2 / (1 - H_ii)^2."""
    pm = dm @ v  # (m, p)
    t = r @ z.T  # (m, p): r_i . z_j
    q = z @ z.T  # (p, p)
    r2 = np.einsum("ij,ij->i", r, r)
    out = np.empty(lambdas.size)
    for i, lam in enumerate(lambdas):
        if np.isinf(lam):
            out[i] = r2.mean() / r.shape[1]
            continue
        g = 1.0 / (s2 + lam)
        a = pm * g
        e2 = r2 - 2 * np.einsum("ij,ij->i", a, t) + np.einsum("ij,ij->i", a @ q, a)
        h = np.einsum("ij,ij->i", pm * pm, g[None, :])
        out[i] = float(np.mean(np.maximum(e2, 0.0) / (1.0 - h) ** 2)) / r.shape[1]
    return out
