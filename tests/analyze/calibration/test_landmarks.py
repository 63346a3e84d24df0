"""Depth landmarks on planted per-layer curves, and their paired bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from analyze import calibration as M
from analyze.calibration.landmarks import depth_landmarks, layer_deltas, plateau_index, rise_index

N = 400


def planted(acc: list[float], conf: list[float], seed: int = 0):
    """Per-example conf, correct (L, N): exactly round(acc * N) correct examples per layer (the
    same examples from layer to layer as far as possible) and one confidence per layer, so ECE
    of layer l is exactly |acc[l] - conf[l]|."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(N)
    correct = np.zeros((len(acc), N))
    for i, a in enumerate(acc):
        correct[i, order[: round(a * N)]] = 1.0
    return np.repeat(np.asarray(conf, float)[:, None], N, axis=1), correct


def curves(conf, correct):
    acc = correct.mean(axis=1)
    ece = np.array([M.ece(c, y, 10) for c, y in zip(conf, correct)])
    return acc, ece


def test_rise_plateau_peak_and_correction_phase_at_planted_layers():
    #        0     1     2     3     4     5     6     7     8     9
    acc = [0.25, 0.26, 0.24, 0.27, 0.40, 0.60, 0.79, 0.80, 0.805, 0.80]
    conf = [0.30, 0.30, 0.30, 0.30, 0.50, 0.75, 0.95, 0.99, 0.90, 0.85]
    c, y = planted(acc, conf)
    a, e = curves(c, y)
    layers = list(range(10, 20))  # layer values, not positions, come out
    lm = depth_landmarks(layers, a, e, c, y, 4.0, n_boot=300, seed=1)
    assert lm["rise_layer"] == 14 and lm["first_crossing_layer"] == 14
    assert lm["rise_layer_sustained"] == 14
    assert lm["plateau_layer"] == 16  # 0.79 is within 0.01 of the final 0.80
    assert lm["peak_miscalibration_layer"] == 17  # |0.80 - 0.99| = 0.19 is the largest gap
    cp = lm["correction_phase"]
    assert (cp["start"], cp["end"], cp["n_layers"]) == (17, 19, 2)
    assert cp["delta_ece"] == pytest.approx(0.05 - 0.19)
    assert cp["delta_confidence"] == pytest.approx(0.85 - 0.99)
    # the same examples are right at both layers and the confidence is constant, so every
    # resample with accuracy <= 0.85 gives exactly 0.05 - 0.19
    assert cp["delta_ece_lo"] == pytest.approx(-0.14) == cp["delta_ece_hi"]
    assert cp["significant"] and cp["significant_confidence"]
    assert cp["delta_confidence_lo"] == pytest.approx(-0.14) == cp["delta_confidence_hi"]
    assert lm["notes"] == [] and set(lm["definitions"]) >= {"rise_layer", "correction_phase"}


def test_flat_curve_has_no_landmarks_and_says_why():
    rng = np.random.default_rng(3)
    acc = list(0.25 + rng.uniform(-0.02, 0.02, 12))
    c, y = planted(acc, list(rng.uniform(0.3, 0.9, 12)))
    a, e = curves(c, y)
    lm = depth_landmarks(range(12), a, e, c, y, 4.0, n_boot=50)
    for k in ("rise_layer", "plateau_layer", "peak_miscalibration_layer", "correction_phase"):
        assert lm[k] is None
    assert len(lm["notes"]) == 1 and "never reaches" in lm["notes"][0]


def test_a_crossing_that_falls_back_to_chance_is_not_a_rise():
    acc = [0.25, 0.36, 0.25, 0.26, 0.25]  # noise crossing at layer 1; ends at chance
    c, y = planted(acc, [0.5] * 5)
    lm = depth_landmarks(range(5), *curves(c, y), c, y, 4.0, n_boot=50)
    assert lm["rise_layer"] is None and lm["first_crossing_layer"] == 1
    assert lm["rise_layer_sustained"] is None
    assert "ends at 0.250, below it" in lm["notes"][0]


def test_peak_at_last_layer_means_no_correction_phase():
    acc = [0.25, 0.5, 0.8, 0.8]
    c, y = planted(acc, [0.3, 0.6, 0.9, 0.99])
    lm = depth_landmarks(range(4), *curves(c, y), c, y, 4.0, n_boot=50)
    assert lm["peak_miscalibration_layer"] == 3 and lm["correction_phase"] is None
    assert "largest at the last layer" in lm["notes"][0]


def test_noise_only_change_is_not_significant():
    rng = np.random.default_rng(5)
    y = (rng.random((6, N)) < 0.7).astype(float)
    y[:] = y[0]  # the same correctness at every layer
    conf = np.clip(0.7 + rng.normal(0, 0.1, (6, N)), 0, 1)
    conf[-1] = np.clip(conf[0] + rng.normal(0, 0.01, N), 0, 1)  # last ~ first
    d = layer_deltas(conf, y, 0, 5, n_boot=400, seed=0)
    assert d["delta_ece_lo"] < 0 < d["delta_ece_hi"]


def test_paired_interval_equals_generic_bootstrap_with_the_same_seed():
    rng = np.random.default_rng(7)
    y = (rng.random((2, 300)) < 0.6).astype(float)
    conf = rng.uniform(0.3, 1.0, (2, 300))

    def delta(c0, c1, y0, y1):
        return M.ece(c1, y1) - M.ece(c0, y0)

    point, lo, hi = M.bootstrap_ci(delta, conf[0], conf[1], y[0], y[1], n_boot=200, seed=4)
    d = layer_deltas(conf, y, 0, 1, n_boot=200, seed=4)
    assert d["delta_ece"] == pytest.approx(point)
    assert (d["delta_ece_lo"], d["delta_ece_hi"]) == pytest.approx((lo, hi), abs=1e-12)


def test_index_helpers():
    assert rise_index([0.2, 0.29, 0.3, 0.2], 4.0) == 2
    assert rise_index([0.3, 0.4], 2.0) is None  # chance 0.5 for two options
    assert plateau_index([0.1, 0.5, 0.7, 0.695, 0.7]) == 2
    assert plateau_index([0.7, 0.7]) == 0
