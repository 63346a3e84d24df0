"""Depth landmarks on planted per-layer curves, and their paired bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from analyze import calibration as M
from analyze.calibration.landmarks import (
    accuracy_lower_bound,
    depth_landmarks,
    first_above,
    layer_deltas,
    plateau_index,
    plateau_tolerance,
    stays_above,
)

HALF = 200  # examples per half; the planted halves are copies of each other
SELECTION = np.arange(2 * HALF) < HALF  # the first half chooses, the second tests


def planted(acc: list[float], conf: list[float], seed: int = 0):
    """Per-example conf, correct (L, 2 * HALF): in each half exactly round(acc * HALF) correct
    examples per layer (the same examples from layer to layer as far as possible) and one
    confidence per layer, so ECE of layer l is exactly |acc[l] - conf[l]| on either half."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(HALF)
    correct = np.zeros((len(acc), HALF))
    for i, a in enumerate(acc):
        correct[i, order[: round(a * HALF)]] = 1.0
    conf_l = np.repeat(np.asarray(conf, float)[:, None], 2 * HALF, axis=1)
    return conf_l, np.concatenate([correct, correct], axis=1)


def test_rise_plateau_peak_and_correction_phase_at_planted_layers():
    #        0     1     2     3     4     5     6     7     8     9
    acc = [0.25, 0.26, 0.24, 0.27, 0.40, 0.60, 0.79, 0.80, 0.805, 0.80]
    conf = [0.30, 0.30, 0.30, 0.30, 0.50, 0.75, 0.95, 0.99, 0.90, 0.85]
    c, y = planted(acc, conf)
    layers = list(range(10, 20))  # layer values, not positions, come out
    lm = depth_landmarks(layers, c, y, chance=0.25, selection=SELECTION, n_boot=300, seed=1)
    # accuracy's lower 95% bound (n = 400) is above 0.25 from layer 4 (0.40) on, not at 0.27
    lo = accuracy_lower_bound(y, n_boot=300, seed=1)
    assert lo[3] < 0.25 < lo[4] and (lo[4:] > 0.25).all()
    assert lm["rise_layer"] == 14 and lm["first_crossing_layer"] == 14
    assert lm["rise_layer_sustained"] == 14
    assert lm["plateau_layer"] == 16  # 0.79 is within 0.01 of the final 0.80
    assert lm["selection_split"]["search_start_layer"] == 16  # the selection half's plateau
    assert lm["peak_miscalibration_layer"] == 17  # |0.80 - 0.99| = 0.19 is the largest gap
    cp = lm["correction_phase"]
    assert (cp["start"], cp["end"], cp["n_layers"]) == (17, 19, 2)
    assert (cp["n_selection"], cp["n_test"]) == (HALF, HALF)
    assert cp["ece_start"] == pytest.approx(0.19) and cp["ece_end"] == pytest.approx(0.05)
    assert cp["delta_ece"] == pytest.approx(0.05 - 0.19)
    assert cp["delta_confidence"] == pytest.approx(0.85 - 0.99)
    # the same examples are right at both layers and the confidence is constant, so every
    # resample with accuracy <= 0.85 gives exactly 0.05 - 0.19
    assert cp["delta_ece_lo"] == pytest.approx(-0.14) == cp["delta_ece_hi"]
    assert cp["significant"] and cp["significant_confidence"]
    assert cp["delta_confidence_lo"] == pytest.approx(-0.14) == cp["delta_confidence_hi"]
    assert lm["notes"] == [] and set(lm["definitions"]) >= {"rise_layer", "correction_phase"}
    assert lm["chance_accuracy"] == lm["rise_threshold"] == 0.25
    split = lm["selection_split"]
    assert (split["n_selection"], split["n_test"], split["seed"]) == (HALF, HALF, 1)


def test_the_peak_is_chosen_on_the_selection_half_and_measured_on_the_test_half():
    # the halves disagree on where ECE peaks: the selection half's peak (layer 2) is the one
    # tested, although all examples together peak at layer 1, and ECE at both ends of the phase
    # comes from the test half
    y = np.zeros((4, 2 * HALF))
    y[:, : int(0.7 * HALF)] = y[:, HALF : HALF + int(0.7 * HALF)] = 1.0  # accuracy 0.7
    conf = np.full((4, 2 * HALF), 0.7)
    conf[1:3, :HALF] = [[0.75], [0.85]]  # selection half: gaps 0, 0.05, 0.15, 0
    conf[1:3, HALF:] = [[0.95], [0.80]]  # test half: gaps 0, 0.25, 0.10, 0
    everyone = M.per_layer_metrics(np.log(np.stack([conf, 1 - conf], -1)), 1 - y[0].astype(int))
    assert int(np.argmax(everyone["ece"])) == 1  # (0.05 + 0.25) / 2 > (0.15 + 0.10) / 2
    lm = depth_landmarks(range(4), conf, y, chance=0.25, selection=SELECTION, n_boot=100)
    cp = lm["correction_phase"]
    assert lm["peak_miscalibration_layer"] == 2 and cp["start"] == 2
    assert cp["ece_start_selection"] == pytest.approx(0.15)
    assert cp["ece_start"] == pytest.approx(0.10) and cp["ece_end"] == pytest.approx(0.0)
    assert cp["delta_ece"] == pytest.approx(-0.10)
    assert cp["delta_confidence"] == pytest.approx(0.70 - 0.80)


def test_flat_curve_has_no_landmarks_and_says_why():
    rng = np.random.default_rng(3)
    acc = list(0.25 + rng.uniform(-0.02, 0.02, 12))
    c, y = planted(acc, list(rng.uniform(0.3, 0.9, 12)))
    lm = depth_landmarks(range(12), c, y, chance=0.25, n_boot=50)
    for k in ("rise_layer", "plateau_layer", "peak_miscalibration_layer", "correction_phase"):
        assert lm[k] is None
    assert len(lm["notes"]) == 1 and "never has its lower 95% bound above chance" in lm["notes"][0]


def test_a_crossing_that_falls_back_to_chance_is_not_a_rise():
    acc = [0.25, 0.36, 0.25, 0.26, 0.25]  # crossing at layer 1 (lower bound ~0.31); ends at chance
    c, y = planted(acc, [0.5] * 5)
    lm = depth_landmarks(range(5), c, y, chance=0.25, n_boot=200)
    assert lm["rise_layer"] is None and lm["first_crossing_layer"] == 1
    assert lm["rise_layer_sustained"] is None
    assert "ends at 0.250" in lm["notes"][0] and "not above it" in lm["notes"][0]


def test_rise_uses_the_interval_not_a_fixed_margin():
    # chance 0.25; accuracy 0.28 on 4,000 examples is clearly above chance (lower bound ~0.266)
    # although it is below the old rule's 1/K + 0.05 = 0.30; 0.28 on 100 examples is not
    big = (np.arange(4000) < 0.28 * 4000).astype(float)[None].repeat(3, axis=0)
    small = big[:, ::40]
    for y, rise in ((big, 0), (small, None)):
        conf = np.full_like(y, 0.5)
        lm = depth_landmarks(range(3), conf, y, chance=0.25, n_boot=400)
        assert lm["rise_layer"] == rise


def test_chance_is_an_accuracy_not_a_number_of_options():
    c, y = planted([0.25, 0.8], [0.3, 0.9])
    with pytest.raises(ValueError, match="chance"):
        depth_landmarks(range(2), c, y, chance=4.0)


def test_peak_at_last_layer_means_no_correction_phase():
    acc = [0.25, 0.5, 0.8, 0.8]
    c, y = planted(acc, [0.3, 0.6, 0.9, 0.99])
    lm = depth_landmarks(range(4), c, y, chance=0.25, n_boot=50)
    assert lm["peak_miscalibration_layer"] == 3 and lm["correction_phase"] is None
    assert "largest at the last layer" in lm["notes"][0]


def test_too_few_examples_to_split_reports_no_peak():
    c, y = planted([0.25, 0.9, 0.9], [0.3, 0.99, 0.9])
    lm = depth_landmarks(
        range(3), c[:, :3], np.ones((3, 3)), chance=0.25, selection=np.array([1, 0, 0], bool)
    )
    assert lm["rise_layer"] is not None and lm["peak_miscalibration_layer"] is None
    assert "too few" in lm["notes"][0]


def test_noise_only_change_is_not_significant():
    rng = np.random.default_rng(5)
    y = (rng.random((6, 400)) < 0.7).astype(float)
    y[:] = y[0]  # the same correctness at every layer
    conf = np.clip(0.7 + rng.normal(0, 0.1, (6, 400)), 0, 1)
    conf[-1] = np.clip(conf[0] + rng.normal(0, 0.01, 400), 0, 1)  # last ~ first
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


def test_accuracy_lower_bound_equals_per_layer_bootstrap():
    rng = np.random.default_rng(2)
    z = rng.normal(0, 2, (3, 250, 4))
    label = rng.integers(0, 4, 250)
    correct = M.confidence_and_correct(M.answer_probs(z), label)[1].astype(float)
    want = M.per_layer_bootstrap(z, label, n_boot=150, seed=9)["accuracy"][0]
    got = accuracy_lower_bound(correct, n_boot=150, seed=9)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_index_helpers():
    assert first_above([0.2, 0.26, 0.24, 0.3], 0.25) == 1
    assert first_above([0.3, 0.4], 0.5) is None
    assert stays_above([0.2, 0.26, 0.24, 0.3, 0.31], 0.25) == 3
    assert stays_above([0.3, 0.3, 0.2], 0.25) is None
    assert stays_above([0.3, np.nan, 0.3], 0.25) == 2  # a missing bound is not above
    assert plateau_index([0.1, 0.5, 0.7, 0.695, 0.7]) == 2
    assert plateau_index([0.7, 0.7]) == 0
    assert plateau_index([0.5, 0.72, 0.75, 0.7], [0.01, 0.01, 0.06, 0.0]) == 2


def test_plateau_tolerance_is_the_noise_of_the_paired_difference_when_larger():
    last = np.array([1, 1, 1, 1, 0, 0, 0, 0], float)
    one_off = np.array([1, 1, 1, 0, 0, 0, 0, 0], float)  # differs from the last on one example
    # differences (0,0,0,1,0,0,0,0): sd (ddof 1) = sqrt(0.125), se = sqrt(0.125 / 8) = 0.125
    tol = plateau_tolerance(np.stack([one_off, last, last]))
    np.testing.assert_allclose(tol, [1.96 * 0.125, 0.01, 0.01])
    # 300 examples whose correctness is redrawn at every layer (accuracy ~0.5 throughout): with
    # 0.01 no layer stays close enough to the last and the plateau would be the last layer
    fixed, noise_aware = [], []
    for seed in range(40):
        y = (np.random.default_rng(seed).random((8, 300)) < 0.5).astype(float)
        fixed.append(plateau_index(y.mean(axis=1)) == 7)
        noise_aware.append(plateau_index(y.mean(axis=1), plateau_tolerance(y)) == 0)
    # measured: 80% and 75% (about 0.95^7: each layer within 1.96 standard errors)
    assert np.mean(fixed) >= 0.75 and np.mean(noise_aware) >= 0.6
