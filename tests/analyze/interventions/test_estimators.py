"""The pca estimator centres the layer deltas per layer; both spectra are reported."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.interventions.estimators import (
    centred,
    components,
    estimate,
    spectra,
    within_components,
)


def _layers_differ(n=400, m=4, d=20, seed=0):
    """Δ whose layers' mean updates differ strongly along w (5·(l − 1.5)·w) while, within every
    layer, the examples vary along one shared direction u (c_i·u, c_i ~ N(0, 1)); mean 0.3·u."""
    rng = np.random.default_rng(seed)
    u, w = np.eye(d)[0], np.eye(d)[1]
    c = rng.normal(size=n)
    x = rng.normal(size=(n, m, d)) * 0.2 + c[:, None, None] * u + 0.3 * u
    x += (5.0 * (np.arange(m) - (m - 1) / 2))[None, :, None] * w
    return x, u, w


def test_pca_centred_per_layer_recovers_the_shared_direction_pooled_does_not():
    x, u, w = _layers_differ()
    fit = estimate(x, "pca")
    assert fit.vector @ u > 0.98  # the shared within-layer direction, sign of the mean Δ
    _, pooled = components(centred(x, "pooled"))
    assert abs(pooled[:, 0] @ w) > 0.98 and abs(pooled[:, 0] @ u) < 0.1  # the layers' means
    sp = spectra(x)
    assert sp["explained_variance"][0] == pytest.approx(fit.explained[0])
    assert sp["explained_variance"][0] > 0.5  # u: half the within-layer variance (d = 20 noise)
    assert sp["explained_variance_pooled"][0] > 0.9  # w: most of the pooled variance
    assert sp["between_layer_share"] > 0.9
    assert sp["top_cosine_per_layer_vs_pooled"] < 0.1
    assert all(len(sp[k]) == 10 for k in ("explained_variance", "explained_variance_pooled"))


def test_pca_sign_follows_the_mean_and_one_layer_has_one_centring():
    x, u, _ = _layers_differ(m=1)
    assert estimate(-x, "pca").vector @ u < -0.98  # the mean of −Δ is along −u
    sp = spectra(x)
    np.testing.assert_allclose(sp["explained_variance"], sp["explained_variance_pooled"])
    assert sp["between_layer_share"] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(centred(x, "per_layer"), centred(x, "pooled"), atol=1e-12)
    with pytest.raises(ValueError, match="centring"):
        centred(x, "median")  # type: ignore[arg-type]


def test_components_handed_in_give_the_same_fit_and_spectra():
    x, _, _ = _layers_differ(seed=1)
    within = within_components(x)
    a, b = estimate(x, "pca"), estimate(x, "pca", within=within)
    np.testing.assert_array_equal(a.vector, b.vector)
    np.testing.assert_array_equal(a.explained, b.explained)
    assert spectra(x) == spectra(x, within=within)
    assert estimate(x, "mean", within=within).vector @ estimate(x, "mean").vector == pytest.approx(
        1
    )
