"""Tests of analyze.calibration.smooth_bootstrap: every replicate is smECE of its resample
(bandwidth re-selected), recomputed here by the point-estimate path with the draw counts as
weights; the bandwidth search equals relplot's bisection."""

from __future__ import annotations

import numpy as np
import pytest

from analyze import calibration as M
from analyze.calibration import smooth_bootstrap as SB
from analyze.calibration.smooth import residual_coefficients


def rows_of(seed, n, r):
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.25, 1.0, (r, n))
    shift = np.array([0.0, 0.1, -0.05, 0.2])[np.arange(r) % 4, None]
    correct = (rng.random((r, n)) < np.clip(conf - shift, 0, 1)).astype(float)
    return conf, correct


@pytest.mark.parametrize("n", [60, 3000])  # few examples: direct products; many: cell sums
def test_replicates_are_smece_of_each_resample(n):
    conf, correct = rows_of(n, n, 4)
    w = M.draw_weights(n, 40, seed=1)
    _, sigma = M.smece_and_bandwidth(conf, correct)
    reps = M.smece_replicates(conf, correct, w, sigma)
    assert reps.shape == (40, 4)
    exact = np.stack([M.smece_and_bandwidth(conf, correct, w[b])[0] for b in range(40)])
    # a replicate may sit one bandwidth step (1/1024) away from the exact path's where its
    # fixed point lies within ~1e-4 of a step: smECE_σ moves by at most ~1e-3 per step
    diff = np.abs(reps - exact)
    assert diff.max() < 1.5e-3
    assert np.median(diff / exact) < 2e-3


def test_fixed_point_search_equals_the_bisection():
    conf, correct = rows_of(3, 400, 8)
    coef = residual_coefficients(conf, conf - correct)
    total = np.full(8, 400.0)
    want = M.relplot_bandwidth(coef, total)
    for guess in (want, want * 1.6, want * 0.7):
        got, value = SB.relplot_bandwidth_from(coef, total, guess)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(
            value, M.smooth_ece_from_coefficients(coef, total, got), rtol=2e-3
        )


def test_replicates_below_the_sized_bandwidth_take_the_exact_path():
    # a point bandwidth four times too large sizes the coefficients for σ >= 2 x the true one:
    # every replicate falls below and is recomputed exactly
    conf, correct = rows_of(4, 300, 2)
    w = M.draw_weights(300, 12, seed=2)
    _, sigma = M.smece_and_bandwidth(conf, correct)
    reps = M.smece_replicates(conf, correct, w, sigma * 4)
    exact = np.stack([M.smece_and_bandwidth(conf, correct, w[b])[0] for b in range(12)])
    np.testing.assert_allclose(reps, exact, rtol=1e-12)


def test_interval_and_empty_resample():
    conf, correct = rows_of(5, 200, 2)
    w = M.draw_weights(200, 200, seed=0)
    value, sigma = M.smece_and_bandwidth(conf, correct)
    lo, hi = M.smece_interval(conf, correct, sigma, w)
    assert (lo < hi).all() and (hi > value).all()
    # a group whose examples were not drawn in a resample has no replicate there (nan)
    w2 = w[:3, :2].copy()
    w2[1] = 0
    reps = M.smece_replicates(conf[:, :2], correct[:, :2], w2, sigma)
    assert np.isnan(reps[1]).all() and np.isfinite(reps[[0, 2]]).all()
