"""analyze/lens/fitted/shortcut.py: the closed form, its leave-one-out penalty choice, and that
it recovers a planted linear map between depths."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.lens.fitted import shortcut as S
from tests.analyze.lens.fitted.planted import map_to_last, planted_maps, residuals


def _data(n=90, d=6, seed=0, noise=0.3):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, d)) * np.linspace(0.5, 3, d)
    target = x @ (np.eye(d) + rng.normal(0, 0.4, (d, d))) + 0.5 + noise * rng.normal(0, 1, (n, d))
    folds = np.arange(n) % 3
    return x, target, folds


def test_fold_fit_equals_a_direct_ridge_solve_at_the_chosen_penalty():
    x, target, folds = _data()
    stats = S.fold_stats(x, target, folds, 3)
    train = folds != 0
    fit = S.fit_fold(stats, 0, x[train], target[train] - x[train])
    w, b = S.solve(stats, 0, fit.penalty)
    np.testing.assert_allclose(fit.weight, w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fit.bias, b, rtol=1e-5, atol=1e-6)
    # and the direct solve is ridge on [x, c 1] of the training rows, written out
    scale = np.sqrt(np.mean(x[train] ** 2))  # the training residuals' root mean square
    assert stats.training(0)[2] == pytest.approx(scale, rel=1e-12)
    dm = np.hstack([x[train], np.full((train.sum(), 1), scale)])
    ref = np.linalg.solve(dm.T @ dm + fit.penalty * np.eye(7), dm.T @ (target - x)[train])
    np.testing.assert_allclose(w, ref[:6], rtol=1e-9)


def test_leave_one_out_errors_equal_refitting_without_each_row():
    x, target, folds = _data(n=40, noise=1.0)
    stats = S.fold_stats(x, target, folds, 3)
    train = np.flatnonzero(folds != 1)
    grid = (0.01, 1.0, 30.0)
    fit = S.fit_fold(stats, 1, x[train], target[train] - x[train], grid)
    gram, _, scale = stats.training(1)
    mean_eig = np.linalg.eigvalsh(gram).mean()
    dm = np.hstack([x, np.full((x.shape[0], 1), scale)])
    for g, loo in zip(grid, fit.loo):
        errs = []
        for i in train:  # refit without row i, predict row i
            keep = train[train != i]
            a = dm[keep]
            w = np.linalg.solve(a.T @ a + g * mean_eig * np.eye(7), a.T @ (target - x)[keep])
            errs.append(np.mean(((target - x)[i] - dm[i] @ w) ** 2))
        assert loo == pytest.approx(np.mean(errs), rel=1e-8)
    assert fit.loo[-1] == pytest.approx(np.mean((target - x)[train] ** 2), rel=1e-12)


def test_an_infinite_penalty_alone_gives_exactly_the_identity():
    x, target, folds = _data()
    stats = S.fold_stats(x, target, folds, 3)
    fit = S.fit_fold(stats, 0, x[:20], (target - x)[:20], grid=())
    assert fit.penalty == np.inf and not fit.weight.any() and not fit.bias.any()
    huge = S.solve(stats, 0, 1e30)
    assert np.abs(huge[0]).max() < 1e-20 and np.abs(huge[1]).max() < 1e-20


def test_recovers_a_planted_linear_map():
    n, n_depth, d = 600, 4, 16
    h = residuals(n, n_depth, d).astype(np.float64)
    maps = planted_maps(n_depth, d)
    folds = np.arange(n) % 5
    for layer in range(n_depth - 1):
        stats = S.fold_stats(h[:, layer], h[:, -1], folds, 5)
        train = folds != 2
        fit = S.fit_fold(stats, 2, h[train, layer], (h[:, -1] - h[:, layer])[train])
        a, c = map_to_last(maps, layer)
        assert fit.penalty < np.inf
        true = a - np.eye(d)
        assert np.linalg.norm(fit.weight - true) < 0.01 * np.linalg.norm(true)
        assert np.linalg.norm(fit.bias - c) < 0.01 * np.linalg.norm(c)
        pred = h[~train, layer] @ (np.eye(d) + fit.weight) + fit.bias
        size = np.linalg.norm(h[~train, -1])
        rel = np.linalg.norm(pred - h[~train, -1]) / size
        identity = np.linalg.norm(h[~train, layer] - h[~train, -1]) / size
        assert rel < 5e-3 and identity > 0.1, (rel, identity)  # the smallest penalty's bias


def test_pure_noise_prefers_a_large_penalty():
    rng = np.random.default_rng(3)
    x, target = rng.normal(0, 1, (60, 8)), rng.normal(0, 1, (60, 8))
    folds = np.arange(60) % 3
    stats = S.fold_stats(x, x + target, folds, 3)
    fit = S.fit_fold(stats, 0, x[folds != 0], target[folds != 0])
    assert fit.relative >= 10  # no linear signal: shrink hard


def test_few_rows_take_the_svd_of_the_design_with_the_same_result():
    x, target, folds = _data(n=24, d=40, noise=0.5)  # 16 training rows < p = 41
    stats = S.fold_stats(x, target, folds, 3)
    train = folds != 2
    args = (stats, 2, x[train], (target - x)[train], (0.01, 0.1, 1.0))
    by_gram, by_svd = S.fit_fold(*args), S.fit_fold(*args, x_train=x[train])
    assert by_svd.penalty == by_gram.penalty
    np.testing.assert_allclose(by_svd.loo, by_gram.loo, rtol=1e-6)
    np.testing.assert_allclose(by_svd.weight, by_gram.weight, rtol=1e-4, atol=1e-6)
    w, b = S.solve(stats, 2, by_svd.penalty)
    np.testing.assert_allclose(by_svd.weight, w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(by_svd.bias, b, rtol=1e-4, atol=1e-6)
