"""Tests of analyze.calibration.metrics against hand-computed values, plain-loop references and synthetic data."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from analyze import calibration as M
from tests import REPO
from tests.analyze.calibration.reference import (
    layer_data,
    random_conf,
    ref_bins,
    ref_ece,
    ref_ece_equal_mass,
    ref_mce,
    softmax,
)

# --------------------------------------------------------------------------- probabilities


def test_answer_probs_is_stable_softmax():
    logits = np.array([[1000.0, 1001.0, 999.0, 1000.0], [0.0, 0.0, 0.0, 0.0]])
    p = M.answer_probs(logits)
    e = np.exp([-1.0, 0.0, -2.0, -1.0])
    np.testing.assert_allclose(p[0], e / e.sum(), rtol=1e-14)
    np.testing.assert_allclose(p[1], 0.25, rtol=1e-15)
    assert p.dtype == np.float64


def test_masked_options_get_zero_and_softmax_is_over_present_ones():
    logits = np.array([[1.0, 2.0, 3.0, 100.0], [0.5, np.nan, -1.0, 2.0]])
    mask = np.array([[True, True, True, False], [True, False, True, True]])
    p = M.answer_probs(logits, mask)
    assert p[0, 3] == 0.0 and p[1, 1] == 0.0
    np.testing.assert_allclose(p[0, :3], softmax(np.array([1.0, 2.0, 3.0])), rtol=1e-14)
    np.testing.assert_allclose(p[1, [0, 2, 3]], softmax(np.array([0.5, -1.0, 2.0])), rtol=1e-14)
    # the (n, K) mask broadcasts over a leading layer axis
    stacked = M.answer_probs(np.stack([logits, 2 * logits]), mask)
    np.testing.assert_array_equal(stacked[0], p)
    assert stacked[1, 0, 3] == 0.0
    np.testing.assert_allclose(M.log_softmax(logits, mask)[0, :3], np.log(p[0, :3]), rtol=1e-13)
    assert M.log_softmax(logits, mask)[0, 3] == -np.inf
    # Brier sums over present options only: 3 options in row 0, 3 in row 1
    b = M.brier(p, np.array([2, 3]), mask)
    expect = ((p[0, :3] - [0, 0, 1]) ** 2).sum() + ((p[1, [0, 2, 3]] - [0, 0, 1]) ** 2).sum()
    assert b == pytest.approx(expect / 2, rel=1e-14)


def test_confidence_and_correct_breaks_ties_to_lowest_index():
    probs = np.array([[0.4, 0.4, 0.2], [0.1, 0.45, 0.45], [0.2, 0.3, 0.5]])
    conf, correct = M.confidence_and_correct(probs, np.array([0, 2, 2]))
    np.testing.assert_array_equal(conf, [0.4, 0.45, 0.5])
    np.testing.assert_array_equal(correct, [True, False, True])


# --------------------------------------------------------------------------- hand-computed values


def test_ece_mce_hand_computed():
    # M = 5 bins of width 0.2.
    #   [0.8, 1.0): 0.95 (right), 0.85 (right)   acc 1.0, conf 0.900, gap 0.100, |B| = 2
    #   [0.6, 0.8): 0.75 (wrong), 0.62 (right)   acc 0.5, conf 0.685, gap 0.185, |B| = 2
    #   [0.4, 0.6): 0.55 (wrong)                 acc 0.0, conf 0.550, gap 0.550, |B| = 1
    #   [0.2, 0.4): 0.35 (wrong)                 acc 0.0, conf 0.350, gap 0.350, |B| = 1
    # ECE = (2*0.1 + 2*0.185 + 0.55 + 0.35) / 6 = 1.47 / 6 = 0.245
    # MCE = 0.55; MCE over bins with >= 2 examples = 0.185
    conf = np.array([0.95, 0.85, 0.75, 0.62, 0.55, 0.35])
    correct = np.array([1, 1, 0, 1, 0, 0], dtype=bool)
    assert M.ece(conf, correct, n_bins=5) == pytest.approx(0.245, abs=1e-15)
    assert M.mce(conf, correct, n_bins=5, min_count=1) == pytest.approx(0.55, abs=1e-15)
    assert M.mce(conf, correct, n_bins=5, min_count=2) == pytest.approx(0.185, abs=1e-15)
    assert math.isnan(M.mce(conf, correct, n_bins=5))  # default 10: no bin holds 10
    assert math.isnan(M.mce(conf, correct, n_bins=5, min_count=3))
    # Equal mass, M = 3: sorted (0.35 w, 0.55 w | 0.62 r, 0.75 w | 0.85 r, 0.95 r)
    # gaps: |0 - 0.45| = 0.45, |0.5 - 0.685| = 0.185, |1 - 0.9| = 0.1; ECE = (0.45+0.185+0.1)/3
    assert M.ece_equal_mass(conf, correct, n_bins=3) == pytest.approx(0.735 / 3, abs=1e-15)
    stats = M.bin_stats(conf, correct, n_bins=5)
    np.testing.assert_array_equal(stats.count, [0, 1, 1, 2, 2])
    np.testing.assert_allclose(stats.sum_correct, [0, 0, 0, 1, 2])


def test_one_lone_example_cannot_set_mce_by_default():
    # 40 examples calibrated exactly (conf 0.75, 30 right) in bin [0.7, 0.8), and one example
    # alone in bin [0.9, 1.0): conf 0.95 and wrong, a gap of 0.95 that min_count = 1 reports
    conf = np.array([0.75] * 40 + [0.95])
    correct = np.array([1] * 30 + [0] * 10 + [0], dtype=float)
    assert M.MCE_MIN_COUNT == 10
    assert M.mce(conf, correct, 10, min_count=1) == pytest.approx(0.95, abs=1e-12)
    assert M.mce(conf, correct, 10) == pytest.approx(0.0, abs=1e-12)  # the 40-example bin
    z = np.log(np.stack([conf, 1 - conf], axis=1))[None]  # two options: confidence = conf
    label = np.where(correct > 0, 0, 1)
    got = M.per_layer_metrics(z, label)
    assert got["mce"][0] == pytest.approx(0.0, abs=1e-12)
    lo, hi = M.per_layer_bootstrap(z, label, n_boot=50, seed=1)["mce"]
    assert hi[0] < 0.2  # no resample lets the lone example (or a few copies of it) set MCE
    assert M.paired_deltas(z, z, label, None, n_boot=0)["mce"]["base"][0] == pytest.approx(0.0)


def test_chance_is_the_mean_of_one_over_k():
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]], bool)
    # (1/2 + 1/4 + 1/3) / 3 = 13/36, not 1 / mean(K) = 1/3
    assert M.chance_accuracy(mask) == pytest.approx(13 / 36, rel=1e-15)
    assert M.chance_accuracy(np.ones((5, 4), bool)) == 0.25
    with pytest.raises(ValueError, match="no option"):
        M.chance_accuracy(np.array([[1, 0], [0, 0]], bool))


def test_truthfulqa_mc1_chance_from_the_data():
    # TruthfulQA MC1 has 2 to 13 options per question: the mean of 1/K is 0.226, 1/mean(K) 0.199
    import json
    import os
    from pathlib import Path

    path = Path(os.environ.get("LAYERCAL_DATA_DIR", "../shared/data")) / "truthfulqa/mc_task.json"
    if not path.is_file():
        pytest.skip(f"no TruthfulQA data at {path}")
    k = np.array([len(row["mc1_targets"]) for row in json.loads(path.read_text())])
    mask = np.arange(k.max())[None, :] < k[:, None]
    assert len(k) == 817
    assert M.chance_accuracy(mask) == pytest.approx(0.2261, abs=1e-4)
    assert 1 / k.mean() == pytest.approx(0.1986, abs=1e-4)


def test_bin_edges_hand_computed():
    # each edge i/10 starts bin i; 1.0 joins the last bin; just below 0.3 stays in bin 2
    conf = np.array([*(np.arange(11) / 10), np.nextafter(0.3, 0.0)])
    stats = M.bin_stats(conf, np.zeros(12), n_bins=10)
    np.testing.assert_array_equal(stats.count, [1, 1, 2, 1, 1, 1, 1, 1, 1, 2])


def test_brier_nll_hand_computed():
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.25, 0.25, 0.5]])
    label = np.array([0, 2, 2])
    # Brier: 0.25+0.09+0.04 = 0.38; 0.01+0.36+0.49 = 0.86; 0.0625+0.0625+0.25 = 0.375
    assert M.brier(probs, label) == pytest.approx((0.38 + 0.86 + 0.375) / 3, rel=1e-14)
    # NLL: (-ln 0.5 - ln 0.3 - ln 0.5) / 3
    assert M.nll(probs, label) == pytest.approx((2 * math.log(2) + math.log(10 / 3)) / 3, rel=1e-14)
    # clipped at 1e-12: one certain miss costs -ln 1e-12
    assert M.nll(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(12 * math.log(10))
    # entropy: uniform over 4 = ln 4; one-hot = 0
    np.testing.assert_allclose(M.entropy(np.array([[0.25] * 4, [0, 1, 0, 0]])), [math.log(4), 0])
    # KL([0.5, 0.5, 0] || [0.25, 0.25, 0.5]) = ln 2
    kl = M.kl_divergence(np.array([[0.5, 0.5, 0.0]]), np.array([[0.25, 0.25, 0.5]]))
    np.testing.assert_allclose(kl, [math.log(2)], rtol=1e-14)
    assert M.flip_rate(np.array([0, 1, 2, 3]), np.array([0, 1, 3, 2])) == 0.5


# --------------------------------------------------------------------------- loop reference


@pytest.mark.parametrize("n_bins", [10, 15])
def test_binned_metrics_match_loop_reference(n_bins):
    for seed in range(25):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(1, 300))
        conf = random_conf(rng, n, n_bins)
        correct = rng.uniform(size=n) < conf
        c, y = list(conf), [float(v) for v in correct]
        assert M.ece(conf, correct, n_bins) == pytest.approx(ref_ece(c, y, n_bins), abs=1e-12)
        for min_count in (1, 3):
            got, want = M.mce(conf, correct, n_bins, min_count), ref_mce(c, y, n_bins, min_count)
            assert got == pytest.approx(want, abs=1e-12, nan_ok=True)
        want_em = ref_ece_equal_mass(c, y, n_bins)
        assert M.ece_equal_mass(conf, correct, n_bins) == pytest.approx(want_em, abs=1e-12)
        stats = M.bin_stats(conf, correct, n_bins)
        np.testing.assert_array_equal(stats.count, [b[0] for b in ref_bins(c, y, n_bins)])


def test_scores_match_loop_reference():
    rng = np.random.default_rng(7)
    n, k = 40, 5
    logits = rng.normal(size=(n, k)) * 3
    mask = rng.uniform(size=(n, k)) < 0.7
    mask[np.arange(n), rng.integers(0, k, n)] = True
    label = np.array([rng.choice(np.flatnonzero(row)) for row in mask])
    p, q = M.answer_probs(logits, mask), M.answer_probs(logits[::-1], mask)
    for i in range(n):
        present = [j for j in range(k) if mask[i, j]]
        e = [math.exp(logits[i, j]) for j in present]
        for j, ej in zip(present, e):
            assert p[i, j] == pytest.approx(ej / sum(e), rel=1e-12)
    brier = sum(
        sum((p[i, j] - (j == label[i])) ** 2 for j in range(k) if mask[i, j]) for i in range(n)
    )
    assert M.brier(p, label, mask) == pytest.approx(brier / n, rel=1e-12)
    assert M.nll(p, label) == pytest.approx(-sum(math.log(p[i, label[i]]) for i in range(n)) / n)
    ent = [-sum(v * math.log(v) for v in p[i] if v > 0) for i in range(n)]
    np.testing.assert_allclose(M.entropy(p), ent, rtol=1e-12)
    # where q has an absent option that p has present, KL is inf; rows with a shared mask are finite
    kl = [
        sum(p[i, j] * math.log(p[i, j] / q[i, j]) for j in range(k) if p[i, j] > 0)
        for i in range(n)
    ]
    np.testing.assert_allclose(M.kl_divergence(p, np.where(mask, q, 1e-300)), kl, rtol=1e-9)


# --------------------------------------------------------------------------- synthetic calibration


def test_calibrated_data_has_small_ece_and_overconfident_data_ece_near_gap():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.25, 1.0, 200_000)
    u = rng.uniform(size=conf.size)
    calibrated, overconfident = u < conf, u < conf - 0.1
    for n_bins in (10, 15):
        assert M.ece(conf, calibrated, n_bins) < 0.01
        assert M.ece(conf, overconfident, n_bins) == pytest.approx(0.1, abs=0.01)
    assert M.ece_equal_mass(conf, calibrated) < 0.01
    assert M.ece_equal_mass(conf, overconfident) == pytest.approx(0.1, abs=0.01)


def test_ece_equal_mass_ignores_input_order_with_ties():
    rng = np.random.default_rng(3)
    conf = rng.choice([0.3, 0.5, 0.8], 101)
    correct = rng.uniform(size=101) < 0.5
    perm = rng.permutation(101)
    assert M.ece_equal_mass(conf, correct, 7) == M.ece_equal_mass(conf[perm], correct[perm], 7)
    # fewer examples than bins: one example per bin, ECE = mean |correct - conf|
    assert M.ece_equal_mass([0.9, 0.6], [1, 0], 10) == pytest.approx((0.1 + 0.6) / 2)


# --------------------------------------------------------------------------- per-layer metrics


def test_per_layer_metrics_equals_scalar_calls():
    logits, label, mask = layer_data(0, n_layers=5)
    got = M.per_layer_metrics(logits, label, mask, n_bins=15, mce_min_count=2)
    probs = M.answer_probs(logits, mask)
    conf, correct = M.confidence_and_correct(probs, label)
    pred = probs.argmax(axis=-1)
    for layer in range(5):
        p, c, y = probs[layer], conf[layer], correct[layer]
        want = {
            "accuracy": y.mean(),
            "ece": M.ece(c, y, 15),
            "mce": M.mce(c, y, 15, min_count=2),
            "ece_equal_mass": M.ece_equal_mass(c, y, 15),
            "brier": M.brier(p, label, mask),
            "nll": M.nll(p, label),
            "mean_confidence": c.mean(),
            "entropy": M.entropy(p).mean(),
            "kl_to_last": M.kl_divergence(probs[-1], p).mean(),
            "flip_rate": M.flip_rate(pred[layer], pred[-1]),
        }
        assert set(got) == set(want)
        for name, value in want.items():
            assert got[name].shape == (5,)
            assert got[name][layer] == pytest.approx(value, rel=1e-10, abs=1e-14), name
    assert got["kl_to_last"][-1] == 0.0 and got["flip_rate"][-1] == 0.0


# --------------------------------------------------------------------------- errors and imports

_P = np.full((3, 4), 0.25)
_MASK = np.array([[1, 1, 1, 0]] * 3, bool)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: M.answer_probs(np.zeros((0, 4))), "empty"),
        (lambda: M.answer_probs(np.zeros(4)), "shape"),
        (lambda: M.answer_probs(np.zeros((3, 4)), np.ones((3, 3), bool)), "choice_mask has shape"),
        (lambda: M.answer_probs(np.zeros((2, 2)), [[1, 1], [0, 0]]), "no present option"),
        (lambda: M.answer_probs(np.array([[np.nan, 0.0]])), "finite"),
        (lambda: M.brier(_P, [0, 1, 3], _MASK), "marks absent"),
        (lambda: M.nll(_P, [0, 1, 4]), "outside"),
        (lambda: M.nll(_P, [0, 1]), "label has shape"),
        (lambda: M.nll(_P, [0.0, 1.0, 2.0]), "integer"),
        (lambda: M.ece([0.5], [1], n_bins=0), "n_bins"),
        (lambda: M.ece([0.5, 0.6], [1]), "one shape"),
        (lambda: M.ece([], []), "empty"),
        (lambda: M.ece([1.5], [1]), r"\[0, 1\]"),
        (lambda: M.ece([0.5], [2]), "0/1"),
        (lambda: M.mce([0.5], [1], min_count=0), "min_count"),
        (lambda: M.ece_from_bins(M.BinStats.zeros(10)), "no examples"),
        (lambda: M.flip_rate([0, 1], [0]), "one shape"),
        (lambda: M.kl_divergence(np.ones((2, 3)) / 3, np.ones((2, 4)) / 4), "same K"),
        (lambda: M.fit_temperature(np.zeros((3, 4)), [0, 1, 3], _MASK), "marks absent"),
        (lambda: M.per_layer_metrics(np.zeros((3, 4)), [0, 1, 2]), r"\(L, n, K\)"),
        (lambda: M.per_layer_bootstrap(np.zeros((2, 3, 4)), [0, 1, 2], n_boot=0), "n_boot"),
        (lambda: M.bootstrap_ci(np.mean, np.ones(3), np.ones(4)), "disagree"),
        (lambda: M.bootstrap_ci(np.mean, np.ones(3), alpha=1.5), "alpha"),
    ],
)
def test_bad_input_raises_clear_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_import_leaves_torch_out():
    code = (
        "import sys, numpy as np, analyze.calibration as m\n"
        "m.fit_temperature(np.eye(3), np.arange(3))\n"
        "bad = [k for k in ('torch', 'transformers') if k in sys.modules]\n"
        "assert not bad, bad\n"
    )
    root = REPO
    res = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
