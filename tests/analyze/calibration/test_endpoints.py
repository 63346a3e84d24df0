"""Tests of analyze.calibration.endpoints: each column is its metric function applied alone."""

from __future__ import annotations

import numpy as np
import pytest

from analyze import calibration as M


def test_endpoint_rows_are_the_metric_functions():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.25, 1.0, (3, 150))
    correct = (rng.random((3, 150)) < conf - 0.1).astype(float)
    u = M.floor_uniforms(150, 50, seed=2)
    w = M.draw_weights(150, 60, seed=1)
    out = M.endpoint_rows(conf, correct, n_bins=10, uniforms=u, weights=w)
    assert set(out) == set(M.ENDPOINTS)
    for r in range(3):
        c, y = conf[r], correct[r]
        value, sigma = M.smece_and_bandwidth(c, y)
        assert out["smece"][r] == pytest.approx(value, rel=1e-12)
        assert out["ece_floor"][r] == pytest.approx(M.ece_floor(c, 10, uniforms=u), rel=1e-12)
        assert out["gap"][r] == pytest.approx(M.signed_gap(c, y), rel=1e-12)
        assert out["auroc"][r] == pytest.approx(M.auroc(c, y), rel=1e-12)
        dec = M.brier_decomposition(c, y, 10)
        assert out["brier_reliability"][r] == pytest.approx(dec["reliability"], rel=1e-12)
        assert out["brier_resolution"][r] == pytest.approx(dec["resolution"], rel=1e-12)
        lo, hi = M.smece_interval(c[None], y[None], np.array([sigma]), w)
        # float32 products cut at a K set by all rows: equal to 1e-6
        assert (out["smece_lo"][r], out["smece_hi"][r]) == pytest.approx((lo[0], hi[0]), rel=1e-6)
    no_boot = M.endpoint_rows(conf, correct, n_bins=10, uniforms=u)
    assert np.isnan(no_boot["smece_lo"]).all() and np.isnan(no_boot["smece_hi"]).all()


def test_groups_smece_in_one_search_equals_each_alone():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.25, 1.0, (2, 90))
    correct = (rng.random((2, 90)) < conf).astype(float)
    groups = [np.arange(0, 30), np.arange(30, 90), np.array([1, 5, 7, 40])]
    value, sigma = M.smece_of_groups(conf, correct, groups)
    for g, idx in enumerate(groups):
        v, s = M.smece_and_bandwidth(conf[:, idx], correct[:, idx])
        np.testing.assert_allclose(value[g], v, rtol=1e-12)
        np.testing.assert_array_equal(sigma[g], s)
