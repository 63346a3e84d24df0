"""analyze/calibration/_bootstrap.py: percentile intervals, their coverage, and the resample
weights."""

from __future__ import annotations

import numpy as np

import analyze.calibration._bootstrap as bootstrap_mod
from analyze import calibration as M
from tests.analyze.calibration.reference import (
    layer_data,
)


def test_bootstrap_ci_coverage_of_accuracy():
    rng = np.random.default_rng(0)
    p, n, reps = 0.7, 200, 200
    covered = 0
    for rep in range(reps):
        correct = (rng.uniform(size=n) < p).astype(float)
        point, lo, hi = M.bootstrap_ci(np.mean, correct, n_boot=200, seed=rep)
        assert lo <= point <= hi
        covered += lo <= p <= hi
    assert 0.90 <= covered / reps <= 0.99


def test_per_layer_bootstrap_coverage_of_accuracy():
    # 200 "layers", each an independent draw with accuracy p: one call gives 200 intervals
    rng = np.random.default_rng(1)
    n_layers, n, p = 200, 300, 0.6
    label = rng.integers(0, 4, n)
    hit = rng.uniform(size=(n_layers, n)) < p
    pred = np.where(hit, label, (label + rng.integers(1, 4, (n_layers, n))) % 4)
    logits = rng.normal(size=(n_layers, n, 4)) * 0.1
    np.put_along_axis(logits, pred[..., None], 5.0, axis=-1)
    lo, hi = M.per_layer_bootstrap(logits, label, n_boot=300)["accuracy"]
    assert 0.90 <= np.mean((lo <= p) & (p <= hi)) <= 0.99


def test_per_layer_bootstrap_equals_bootstrap_ci_with_same_seed(monkeypatch):
    logits, label, mask = layer_data(2)
    probs = M.answer_probs(logits, mask)
    conf, correct = M.confidence_and_correct(probs, label)
    got = M.per_layer_bootstrap(logits, label, mask, n_bins=10, n_boot=120, seed=5)
    stat = {
        "accuracy": lambda c, y, p: y.mean(),
        "mean_confidence": lambda c, y, p: c.mean(),
        "ece": lambda c, y, p: M.ece(c, y, 10),
        "mce": lambda c, y, p: M.mce(c, y, 10),
    }
    for layer in range(logits.shape[0]):
        for name, fn in stat.items():
            _, lo, hi = M.bootstrap_ci(
                fn, conf[layer], correct[layer], probs[layer], n_boot=120, seed=5
            )
            # the binned sums are one float32 product (bootstrap_sums): ECE/MCE to 1e-6
            tol = 1e-6 if name in ("ece", "mce") else 1e-12
            np.testing.assert_allclose(got[name][0][layer], lo, rtol=tol, err_msg=name)
            np.testing.assert_allclose(got[name][1][layer], hi, rtol=tol, err_msg=name)
        # brier and nll resample the labels with the probabilities
        for name, fn in (("brier", M.brier), ("nll", M.nll)):
            _, lo, hi = M.bootstrap_ci(fn, probs[layer], label, n_boot=120, seed=5)
            np.testing.assert_allclose(
                [got[name][0][layer], got[name][1][layer]], [lo, hi], rtol=1e-12
            )
    # small blocks of resamples and of layers give the same intervals
    monkeypatch.setattr(bootstrap_mod, "BLOCK_ELEMENTS", 2000)
    small = M.per_layer_bootstrap(logits, label, mask, n_bins=10, n_boot=120, seed=5)
    for name in got:
        np.testing.assert_allclose(small[name], got[name], rtol=1e-6, err_msg=name)


def test_bootstrap_ci_vector_stat_and_axes():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 50))
    y = rng.normal(size=50)
    point, lo, hi = M.bootstrap_ci(
        lambda a, b: a.mean(axis=1) + b.mean(), x, y, n_boot=50, axis_n=(1, 0)
    )
    assert point.shape == lo.shape == hi.shape == (3,)
    assert np.all(lo <= hi)
    again = M.bootstrap_ci(lambda a, b: a.mean(axis=1) + b.mean(), x, y, n_boot=50, axis_n=(1, 0))
    np.testing.assert_array_equal(again[1], lo)  # seeded: reproducible


def test_draw_weights_are_the_resamples_and_widen_when_a_count_needs_it(monkeypatch):
    rng = np.random.default_rng(7)
    want = np.stack(
        [
            np.bincount(r, minlength=50)
            for b in bootstrap_mod.resample_indices(rng, 50, 30)
            for r in b
        ]
    )
    got = bootstrap_mod.draw_weights(50, 30, seed=7)
    assert got.dtype == np.uint8 and np.array_equal(got, want)
    # a resample that draws one example 300 times does not fit uint8: the counts widen, exactly
    monkeypatch.setattr(
        bootstrap_mod, "resample_indices", lambda rng, n, k: iter([np.zeros((k, n), np.int64)])
    )
    wide = bootstrap_mod.draw_weights(300, 2, seed=0)
    assert wide.dtype == np.uint16 and (wide[:, 0] == 300).all() and wide[:, 1:].sum() == 0
