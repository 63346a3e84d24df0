"""Tests of analyze.calibration.smooth (smECE) against its definition computed a second way (a
direct kernel sum over the reflected images on a dense grid), hand cases with a known value,
relplot's own output, and invariants."""

from __future__ import annotations

import numpy as np
import pytest

from analyze import calibration as M
from analyze.calibration import smooth


def direct_smooth_ece(f, y, sigma, w=None, nt=10001):
    """(1/W) ∫_0^1 |sum_i w_i r_i K_σ(t, f_i)| dt with K_σ summed over the images f + 2m and
    -f + 2m, |m| <= 1 (the next ones are 3 or more away: below 1e-30 for σ <= 0.3), by the
    trapezoid rule on nt points."""
    f, y = np.asarray(f, float), np.asarray(y, float)
    w = np.ones_like(f) if w is None else np.asarray(w, float)
    t = np.linspace(0.0, 1.0, nt)
    s = np.zeros(nt)
    for m in (-1, 0, 1):
        for img in (f + 2 * m, -f + 2 * m):
            k = np.exp(-0.5 * ((t[:, None] - img[None, :]) / sigma) ** 2)
            s += k @ (w * (f - y)) / (sigma * np.sqrt(2 * np.pi))
    a = np.abs(s)
    return float(((a[1:] + a[:-1]) / 2).sum() * (t[1] - t[0]) / w.sum())


def mixed_data(seed, n):
    """Confidences from a beta, correctness drawn at a miscalibrated rate that crosses the
    diagonal (overconfident above 0.6, underconfident below), so the smoothed residual changes
    sign and |.| matters."""
    rng = np.random.default_rng(seed)
    f = rng.beta(2, 2, n)
    p = np.clip(0.6 + 0.5 * (f - 0.6) ** 3 + 0.3 * (f - 0.6), 0, 1)
    return f, (rng.random(n) < p).astype(float)


@pytest.mark.parametrize("sigma", [0.01, 0.03, 0.1, 0.25])
def test_smooth_ece_equals_direct_kernel_sum(sigma):
    f, y = mixed_data(0, 200)
    got = M.smooth_ece(f, y, sigma)
    ref = direct_smooth_ece(f, y, sigma)
    assert got == pytest.approx(ref, rel=2e-4)
    assert got < abs(f - y).mean()  # the residual changes sign: smoothing cancels some of it


def test_weights_are_repeated_examples_and_rows_are_independent():
    f, y = mixed_data(1, 120)
    w = np.random.default_rng(2).integers(0, 4, 120)
    rep_f, rep_y = np.repeat(f, w), np.repeat(y, w)
    assert M.smooth_ece(f, y, 0.05, weights=w) == pytest.approx(
        M.smooth_ece(rep_f, rep_y, 0.05), rel=1e-12
    )
    assert M.smooth_ece(f, y, 0.05, weights=w) == pytest.approx(
        direct_smooth_ece(f, y, 0.05, w), rel=2e-4
    )
    v, s = M.smece_and_bandwidth(f, y, weights=w)
    assert (v, s) == pytest.approx(M.smece_and_bandwidth(rep_f, rep_y), rel=1e-12)
    # a batch of rows gives each row's own result
    f2, y2 = mixed_data(3, 120)
    both, sig = M.smece_and_bandwidth(np.stack([f, f2]), np.stack([y, y2]))
    assert both.shape == (2,) and sig.shape == (2,)
    assert both[1] == pytest.approx(M.smece(f2, y2), rel=1e-12)
    order = np.random.default_rng(4).permutation(120)
    assert M.smece(f[order], y[order]) == pytest.approx(both[0], rel=1e-12)


def test_hand_case_one_confidence():
    # ten examples at confidence 0.7, five right: every residual sits at f = 0.7 and their sum is
    # 10 * 0.2 > 0, so S_σ(t) = 2 K_σ(t, 0.7) > 0 and smECE_σ = 0.2 for every σ; the bandwidth
    # rule returns the smallest multiple of 2**-10 >= 0.2: 205 / 1024. (relplot 1.0.3:
    # 0.1999980, 0.2001953125.)
    f, y = np.full(10, 0.7), np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    v, s = M.smece_and_bandwidth(f, y)
    assert v == pytest.approx(0.2, abs=1e-12)
    assert s == 205 / 1024


def test_one_sign_residual_gives_the_gap_and_two_signs_cancel():
    # 6 wrong at 0.3 (r = +0.3 each) and 6 right at 0.9 (r = -0.1 each): unsmoothed the mass is
    # 1.8 + 0.6 = 2.4 over 12 examples; smoothing cancels some of it as σ grows.
    f = np.array([0.3] * 6 + [0.9] * 6)
    y = np.array([0] * 6 + [1] * 6)
    assert M.smooth_ece(f, y, 0.01) == pytest.approx(0.2, abs=1e-9)  # no overlap yet
    wide = M.smooth_ece(f, y, 0.3)
    assert wide == pytest.approx(direct_smooth_ece(f, y, 0.3), rel=2e-4)
    assert abs(f - y).mean() - wide > 0.02  # the kernels overlap: opposite residuals cancel
    assert wide >= abs((f - y).mean()) - 1e-12  # never below |gap| (the mass of S is conserved)


def test_relplot_reference_values():
    # relplot 1.0.3, relplot.smECE(f, y, return_width=True) and smECE_sigma(f, y, 0.1) on these
    # twelve examples: (0.0808021, 0.08203125) and 0.0743843. relplot convolves on a 1,001-node
    # grid with its Gaussian cut at +-0.5 and reflected once; the definition here reflects
    # exactly, so the values agree to a few 1e-4, the bandwidth exactly.
    f = np.array([0.31, 0.42, 0.55, 0.58, 0.66, 0.71, 0.74, 0.8, 0.86, 0.9, 0.95, 0.99])
    y = np.array([0, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1])
    v, s = M.smece_and_bandwidth(f, y)
    assert s == 0.08203125
    assert v == pytest.approx(0.0808021, abs=5e-4)
    assert M.smooth_ece(f, y, 0.1) == pytest.approx(0.0743843, abs=2e-4)
    assert v == pytest.approx(direct_smooth_ece(f, y, s), rel=2e-4)


def test_bandwidth_is_relplot_bisection():
    f, y = mixed_data(5, 300)
    v, s = M.smece_and_bandwidth(f, y)
    # the result is a multiple of 2**-10; at it σ >= smECE_σ, one step below σ < smECE_σ
    assert (s * 1024) == int(s * 1024)
    assert s >= M.smooth_ece(f, y, s)
    assert s - 1 / 1024 < M.smooth_ece(f, y, s - 1 / 1024)
    assert v == pytest.approx(M.smooth_ece(f, y, s), rel=1e-12)
    assert v <= s and v > s - 2 / 1024  # near the fixed point σ = smECE_σ


def test_calibrated_by_construction_goes_to_zero():
    rng = np.random.default_rng(6)
    values = []
    for n in (500, 5000, 50000):
        f = rng.uniform(0.25, 1.0, n)
        y = (rng.random(n) < f).astype(float)
        values.append(M.smece(f, y))
    assert values[0] > values[1] > values[2]
    assert values[2] < 0.02
    # a miscalibrated predictor of the same size does not
    f = rng.uniform(0.25, 1.0, 50000)
    y = (rng.random(50000) < f - 0.1).astype(float)
    assert M.smece(f, y) == pytest.approx(0.1, abs=0.01)


def test_grid_coefficients_are_a_dct():
    g = np.random.default_rng(7).normal(size=(2, 9))
    k = np.arange(9)
    ref = g @ np.cos(np.pi * np.outer(np.arange(9), k) / 8)
    np.testing.assert_allclose(smooth.grid_coefficients(g), ref, atol=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="sigma"):
        M.smooth_ece([0.5], [1], 0.0)
    with pytest.raises(ValueError, match="within"):
        M.smece([1.5], [1])
    with pytest.raises(ValueError, match="weights"):
        M.smece([0.5, 0.6], [1, 0], weights=[1, -1])
    with pytest.raises(ValueError, match="positive total"):
        M.smece([0.5, 0.6], [1, 0], weights=[0, 0])
