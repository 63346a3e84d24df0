"""Tests of analyze.calibration.landmark_bootstrap: every resample's landmarks against the
landmark rules applied to the resample written out (each example repeated by its draw count),
and the cross-fitted plateau-to-last contrast against its definition."""

from __future__ import annotations

import numpy as np
import pytest

from analyze import calibration as M
from analyze.calibration.landmarks import plateau_index, plateau_tolerance, stays_above

L, N = 8, 240


def planted(seed=0):
    """Accuracy rising from chance to ~0.8 over the first layers, confidence overshooting at
    layer 5 and coming back: a rise, a plateau and a peak to re-select."""
    rng = np.random.default_rng(seed)
    p_right = np.array([0.25, 0.25, 0.3, 0.55, 0.75, 0.8, 0.8, 0.8])
    correct = (rng.random((L, N)) < p_right[:, None]).astype(float)
    correct[5:] = correct[4]  # late layers agree example by example (a real plateau)
    conf = np.clip(rng.normal(p_right[:, None], 0.1, (L, N)), 0.26, 1.0)
    conf[5] = np.clip(conf[5] + 0.15, 0, 1)  # overconfident at 5
    conf[6] = np.clip(conf[6] + 0.08, 0, 1)
    return conf, correct


def brute_layers(conf, correct, sel, w, chance, bins=10):
    """The rules of the module docstring on the resample written out."""
    rep = np.repeat(np.arange(N), w)
    c, y, s = conf[:, rep], correct[:, rep], sel[rep]
    acc = y.mean(axis=1)
    n = y.shape[1]
    lower = acc - 1.96 * np.sqrt(acc * (1 - acc) / n)
    rise = stays_above(lower, chance)
    plateau = plateau_index(acc, plateau_tolerance(y))
    ys, cs = y[:, s], c[:, s]
    start = plateau_index(ys.mean(axis=1), plateau_tolerance(ys))
    eces = [M.ece(cs[i], ys[i], bins) for i in range(L)]
    peak = start + int(np.argmax(eces[start:]))
    return (L if rise is None else rise), plateau, peak


def test_reselected_layers_equal_the_rules_on_each_resample():
    conf, correct = planted()
    sel = M.selection_half(np.zeros(N, int), np.arange(N), 0)
    w = M.draw_weights(N, 25, seed=4)
    got = M.reselected_layers(conf, correct, sel, w, chance=0.25)
    for b in range(25):
        want = brute_layers(conf, correct, sel, w[b], 0.25)
        assert (got["rise"][b], got["plateau"][b], got["peak"][b]) == want, b


def test_intervals_are_quantiles_of_the_reselected_layers():
    conf, correct = planted(1)
    sel = M.selection_half(np.zeros(N, int), np.arange(N), 0)
    w = M.draw_weights(N, 200, seed=0)
    layers = list(range(10, 10 + L))
    out = M.reselected_intervals(layers, conf, correct, sel, w, chance=0.25)
    found = M.reselected_layers(conf, correct, sel, w, chance=0.25)
    for name in ("rise", "plateau", "peak"):
        lo, hi = np.quantile(found[name], [0.025, 0.975], method="inverted_cdf")
        assert out[f"{name}_layer_interval"] == [layers[int(lo)], layers[int(hi)]]
    # a chance no layer clears: the rise is never reached, its interval is [None, None]
    never = M.reselected_intervals(layers, conf, correct, sel, w, chance=0.95)
    assert never["rise_layer_interval"] == [None, None] and never["rise_not_reached"] == 1.0


def test_plateau_to_last_is_cross_fitted():
    conf, correct = planted(2)
    rng = np.random.default_rng(3)
    nll = rng.uniform(0.2, 2.0, (L, N))
    brier = rng.uniform(0.0, 1.0, (L, N))
    sel = M.selection_half(np.zeros(N, int), np.arange(N), 0)
    w = M.draw_weights(N, 300, seed=1)
    out = M.plateau_to_last(conf, correct, nll, brier, sel, w, layers=list(range(L)))
    halves = {"selection": sel, "test": ~sel}
    chosen = {
        k: plateau_index(correct[:, h].mean(1), plateau_tolerance(correct[:, h]))
        for k, h in halves.items()
    }
    parts = {}
    for measured, other in (("test", "selection"), ("selection", "test")):
        h, p = halves[measured], chosen[other]
        parts[measured] = (
            h.sum(),
            M.ece(conf[-1, h], correct[-1, h]) - M.ece(conf[p, h], correct[p, h]),
            (nll[-1, h] - nll[p, h]).mean(),
        )
    n = N
    want_ece = sum(k * d for k, d, _ in parts.values()) / n
    want_nll = sum(k * d for k, _, d in parts.values()) / n
    assert out["delta_ece"] == pytest.approx(want_ece, abs=1e-12)
    assert out["delta_nll"] == pytest.approx(want_nll, abs=1e-6)
    assert out["start"] == [chosen["selection"], chosen["test"]]
    assert out["delta_nll_lo"] < out["delta_nll"] < out["delta_nll_hi"]
    assert out["delta_ece_lo"] <= out["delta_ece_hi"]
    # one resample's combination, by writing it out
    b = 7
    rep = {m: np.repeat(np.flatnonzero(halves[m]), w[b][halves[m]]) for m in halves}
    comb = 0.0
    for measured, other in (("test", "selection"), ("selection", "test")):
        idx, p = rep[measured], chosen[other]
        comb += halves[measured].sum() * (nll[-1, idx] - nll[p, idx]).mean() / n
    reps = M.plateau_to_last(conf, correct, nll, brier, sel, w[[b, b]], layers=list(range(L)))
    assert reps["delta_nll_lo"] == pytest.approx(comb, abs=1e-6)
