"""Tests of analyze.calibration.floor (the noise floor of binned ECE) against closed forms and
the binned ECE applied to the simulated outcomes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analyze import calibration as M


def expected_abs_binomial_gap(n: int, p: float) -> float:
    """E |Binomial(n, p) - n p| exactly, by summing the pmf."""
    return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) * abs(k - n * p) for k in range(n + 1))


@pytest.mark.parametrize("n_bins", [1, 10])
def test_one_confidence_is_the_binomial_mean_absolute_deviation(n_bins):
    # all confidences p: one bin holds everything, ECE = |Bin(n, p) / n - p|
    n, p, sims = 50, 0.7, 20000
    got = M.ece_floor(np.full(n, p), n_bins, n_sim=sims, seed=1)
    exact = expected_abs_binomial_gap(n, p) / n
    se = 0.6 * exact / math.sqrt(sims)  # sd of |Bin/n - p| is below 0.76 of its mean
    assert abs(got - exact) < 4 * se, (got, exact)


def test_two_bins_add_their_deviations():
    # 30 examples at 0.35 and 20 at 0.85, ten bins: the floor is the sum over the two bins of
    # E |Bin(n_b, p_b) - n_b p_b|, over n
    conf = np.array([0.35] * 30 + [0.85] * 20)
    exact = (expected_abs_binomial_gap(30, 0.35) + expected_abs_binomial_gap(20, 0.85)) / 50
    got = M.ece_floor(conf, 10, n_sim=20000, seed=2)
    assert got == pytest.approx(exact, rel=0.02)


def test_floor_is_the_mean_ece_of_the_simulated_outcomes():
    rng = np.random.default_rng(3)
    conf = rng.uniform(0.25, 1.0, 137)
    u = M.floor_uniforms(137, 40, seed=9)
    by_hand = np.mean([M.ece(conf, row < conf, 10) for row in u])
    assert M.ece_floor(conf, 10, n_sim=40, seed=9) == pytest.approx(by_hand, rel=1e-12)
    assert M.ece_floor(conf, 10, uniforms=u) == pytest.approx(by_hand, rel=1e-12)
    # rows share the uniforms: a stack gives each row's own floor
    conf2 = rng.uniform(0.25, 1.0, 137)
    both = M.ece_floor(np.stack([conf, conf2]), 10, n_sim=40, seed=9)
    assert both.shape == (2,)
    assert both[1] == pytest.approx(M.ece_floor(conf2, 10, n_sim=40, seed=9), rel=1e-12)


def test_large_sample_matches_the_normal_approximation_and_shrinks_with_n():
    rng = np.random.default_rng(4)
    floors = []
    for n in (400, 3600):
        conf = rng.uniform(0.3, 0.95, n)
        b = M.bin_index(conf, 10)
        var = np.bincount(b, weights=conf * (1 - conf), minlength=10)
        normal = math.sqrt(2 / math.pi) * np.sqrt(var).sum() / n
        floors.append(M.ece_floor(conf, 10, n_sim=400, seed=0))
        assert floors[-1] == pytest.approx(normal, rel=0.05)
    assert floors[1] == pytest.approx(floors[0] / 3, rel=0.08)  # ~ 1 / sqrt(n)


def test_seeded_and_checked():
    conf = np.linspace(0.3, 0.9, 25)
    assert M.ece_floor(conf, seed=5) == M.ece_floor(conf, seed=5)
    assert M.ece_floor(conf, seed=5) != M.ece_floor(conf, seed=6)
    with pytest.raises(ValueError, match="uniforms"):
        M.ece_floor(conf, uniforms=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="n_sim"):
        M.ece_floor(conf, n_sim=0)
    with pytest.raises(ValueError, match="within"):
        M.ece_floor([1.2])


def test_per_row_path_of_large_samples_equals_the_mean_ece():
    # from 2,048 examples the bin sums are matrix products per row instead of one bincount
    rng = np.random.default_rng(8)
    conf = rng.uniform(0.25, 1.0, (2, 2500))
    u = M.floor_uniforms(2500, 6, seed=1)
    got = M.ece_floor(conf, 10, uniforms=u)
    for r in range(2):
        by_hand = np.mean([M.ece(conf[r], row < conf[r], 10) for row in u])
        assert got[r] == pytest.approx(by_hand, rel=1e-9)
