"""Tests of analyze.calibration.discrimination: AUROC against a brute-force pair count and scipy's
Mann-Whitney U, the Brier decomposition against per-bin loops and its identity, the gap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from analyze import calibration as M


def brute_auroc(conf, correct):
    pos = [c for c, y in zip(conf, correct) if y]
    neg = [c for c, y in zip(conf, correct) if not y]
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def tied_data(seed, n):
    rng = np.random.default_rng(seed)
    conf = np.round(rng.uniform(0.25, 1.0, n) * 20) / 20  # many ties
    correct = rng.random(n) < conf
    return conf, correct


def test_auroc_equals_pair_count_and_mann_whitney():
    conf, correct = tied_data(0, 90)
    got = M.auroc(conf, correct)
    assert got == pytest.approx(brute_auroc(conf, correct), abs=1e-12)
    u = mannwhitneyu(conf[correct], conf[~correct], method="asymptotic").statistic
    assert got == pytest.approx(u / (correct.sum() * (~correct).sum()), abs=1e-12)


def test_auroc_hand_case_rows_and_invariance():
    # right: 0.9, 0.6; wrong: 0.7, 0.6. Pairs: (0.9>0.7) 1, (0.9>0.6) 1, (0.6<0.7) 0,
    # (0.6=0.6) 1/2: AUROC = 2.5 / 4
    conf = np.array([0.9, 0.6, 0.7, 0.6])
    correct = np.array([1, 1, 0, 0])
    assert M.auroc(conf, correct) == 0.625
    # an increasing map of the confidences (a rescaling) leaves it unchanged
    assert M.auroc(conf**3 / 2, correct) == 0.625
    c2, y2 = tied_data(1, 50)
    stacked = M.auroc(np.stack([c2, c2[::-1]]), np.stack([y2, y2[::-1]]))
    assert stacked.shape == (2,)
    np.testing.assert_allclose(stacked, M.auroc(c2, y2), rtol=1e-14)  # order does not matter
    assert np.isnan(M.auroc([0.5, 0.7], [1, 1]))


def test_average_ranks_match_scipy():
    from scipy.stats import rankdata

    x = np.round(np.random.default_rng(2).random((3, 40)) * 8)
    np.testing.assert_array_equal(M.average_ranks(x), rankdata(x, axis=-1))


def loop_decomposition(conf, correct, m):
    n, acc = len(conf), float(np.mean(correct))
    rel = res = within = 0.0
    for b in range(m):
        idx = [i for i, c in enumerate(conf) if M.bin_index(np.array([c]), m)[0] == b]
        if not idx:
            continue
        cb = np.mean([conf[i] for i in idx])
        ab = np.mean([correct[i] for i in idx])
        rel += len(idx) * (cb - ab) ** 2
        res += len(idx) * (ab - acc) ** 2
        within += sum((conf[i] - cb) ** 2 - 2 * (conf[i] - cb) * (correct[i] - ab) for i in idx)
    return rel / n, res / n, acc * (1 - acc), within / n


def test_brier_decomposition_terms_and_identity():
    conf, correct = tied_data(3, 200)
    conf = conf + np.random.default_rng(4).uniform(-0.02, 0.0, 200)  # vary within bins
    d = M.brier_decomposition(conf, correct, 10)
    rel, res, unc, within = loop_decomposition(conf, correct.astype(float), 10)
    assert d["reliability"] == pytest.approx(rel, rel=1e-12)
    assert d["resolution"] == pytest.approx(res, rel=1e-12)
    assert d["uncertainty"] == pytest.approx(unc, rel=1e-12)
    assert d["within_bin"] == pytest.approx(within, rel=1e-9, abs=1e-15)
    top = np.mean((conf - correct) ** 2)
    assert d["brier_top"] == pytest.approx(top, rel=1e-14)
    total = d["reliability"] - d["resolution"] + d["uncertainty"] + d["within_bin"]
    assert total == pytest.approx(top, abs=1e-14)


def test_brier_decomposition_of_binned_forecasts_is_murphy():
    # confidences constant within each bin: within_bin = 0 and the three-term identity is exact;
    # bins [0.6, 0.7): 0.65 x4 (3 right); [0.9, 1.0): 0.95 x4 (4 right)
    conf = np.array([0.65] * 4 + [0.95] * 4)
    correct = np.array([1, 1, 1, 0, 1, 1, 1, 1])
    d = M.brier_decomposition(conf, correct, 10)
    acc = 7 / 8
    assert d["within_bin"] == pytest.approx(0.0, abs=1e-15)
    assert d["reliability"] == pytest.approx((4 * 0.1**2 + 4 * 0.05**2) / 8, rel=1e-12)
    assert d["resolution"] == pytest.approx((4 * (0.75 - acc) ** 2 + 4 * (1 - acc) ** 2) / 8)
    assert d["uncertainty"] == pytest.approx(acc * (1 - acc))
    # rows: a stack gives each row's decomposition
    two = M.brier_decomposition(np.stack([conf, conf]), np.stack([correct, correct]), 10)
    np.testing.assert_allclose(two["reliability"], d["reliability"], rtol=1e-14)


def test_signed_gap():
    assert M.signed_gap([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(0.25)
    assert M.signed_gap(np.array([[0.3, 0.5]]), np.array([[1, 1]]))[0] == pytest.approx(-0.6)


def test_best_constant_chance():
    label = np.array([0, 1, 1, 2, 1, 3, 0, 1])
    assert M.best_constant_chance(label) == 0.5
    assert M.best_constant_chance(label, np.ones((8, 4), bool)) == 0.5
    # balanced labels: the best constant is exactly chance
    assert M.best_constant_chance(np.arange(40) % 4) == 0.25
    with pytest.raises(ValueError, match="absent"):
        M.best_constant_chance([0, 2], np.array([[1, 1, 0], [1, 1, 0]], bool))
