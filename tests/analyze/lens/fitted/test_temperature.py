"""analyze/lens/fitted/temperature.py: the fitted temperature against a one-dimensional grid."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.lens.fitted.temperature import BETA_BOUNDS, fit_beta, mean_kl
from analyze.lens.fitted.tokens import set_log_probs


def _kl_direct(p_logits, z, beta):
    """KL(softmax(p_logits) || softmax(beta z)) per example, written out."""
    p = np.exp(p_logits) / np.exp(p_logits).sum(-1, keepdims=True)
    q = np.exp(beta * z) / np.exp(beta * z).sum(-1, keepdims=True)
    return (p * np.log(p / q)).sum(-1)


@pytest.mark.parametrize("true_beta", [0.3, 1.0, 2.5])
def test_fit_beta_matches_a_grid_search(true_beta):
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, (200, 12))
    target = true_beta * z + rng.normal(0, 0.4, z.shape)  # a sharper or flatter final
    log_p = set_log_probs(target)
    beta = fit_beta(log_p, z)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 4001))
    kl = np.array([_kl_direct(target, z, b).mean() for b in grid])
    best = grid[kl.argmin()]
    assert beta == pytest.approx(best, rel=2e-3)  # the grid's own spacing is 1.6e-3
    assert mean_kl(log_p, z, beta) <= kl.min() + 1e-9
    assert mean_kl(log_p, z, beta) == pytest.approx(_kl_direct(target, z, beta).mean(), rel=1e-9)


def test_the_final_distribution_itself_gives_temperature_one():
    z = np.random.default_rng(1).normal(0, 3, (50, 9))
    assert fit_beta(set_log_probs(z), z) == pytest.approx(1.0, abs=1e-6)


def test_a_flat_lens_stops_at_the_bound():
    rng = np.random.default_rng(2)
    z = 1e-6 * rng.normal(0, 1, (30, 5))  # no signal: an enormous beta would be needed
    log_p = set_log_probs(rng.normal(0, 3, (30, 5)))
    assert fit_beta(log_p, z) == pytest.approx(BETA_BOUNDS[1], rel=1e-3) or fit_beta(
        log_p, z
    ) == pytest.approx(BETA_BOUNDS[0], rel=1e-3)
