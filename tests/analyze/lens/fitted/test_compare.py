"""analyze/lens/fitted/compare.py: the plateau-to-last contrast against the landmark machinery
it must agree with (window_change on the test half) and direct means."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.calibration import TERMS, window_change
from analyze.lens.fitted.compare import lens_contrasts


def _terms(n=400, n_layers=6, seed=0):
    rng = np.random.default_rng(seed)
    conf = np.clip(
        rng.uniform(0.3, 1.0, (n_layers, n)) - np.linspace(0, 0.3, n_layers)[:, None], 0.25, 1
    )
    correct = (rng.random((n_layers, n)) < 0.55).astype(float)
    t = np.zeros((len(TERMS), n_layers, n))
    t[TERMS.index("correct")], t[TERMS.index("conf")] = correct, conf
    t[TERMS.index("entropy")] = rng.uniform(0, 1.3, (n_layers, n))
    t[TERMS.index("kl_to_last")] = rng.uniform(0, 1, (n_layers, n))
    t[TERMS.index("flip")] = (rng.random((n_layers, n)) < 0.2).astype(float)
    return t


def test_plateau_to_last_is_window_change_on_the_test_half():
    t = _terms()
    sel = np.arange(400) % 2 == 0
    marks = {"selection_split": {"search_start_layer": 12}}
    layers = [0, 4, 8, 12, 16, 20]
    cols, pt = lens_contrasts(layers, t, sel, marks, 10, {"n_boot": 300, "seed": 3, "alpha": 0.05})
    conf, correct = t[TERMS.index("conf")][:, ~sel], t[TERMS.index("correct")][:, ~sel]
    ref = window_change(conf, correct, 3, 5, n_bins=10, n_boot=300, seed=3)
    for key in ("ece_start", "ece_end", "delta_ece", "delta_ece_lo", "delta_ece_hi"):
        assert pt[key] == pytest.approx(ref[key], abs=1e-12), key
    for key in ("delta_confidence", "delta_confidence_lo", "delta_confidence_hi"):
        assert pt[key] == pytest.approx(ref[key], abs=1e-12), key
    assert pt["start"] == 12 and pt["end"] == 20 and pt["n_test"] == 200
    assert pt["agreement_with_last_start"] == pytest.approx(
        1 - t[TERMS.index("flip")][3, ~sel].mean()
    )
    assert pt["entropy_end"] == pytest.approx(t[TERMS.index("entropy")][5, ~sel].mean())
    assert pt["calibrated_like_last"] == (
        pt["delta_ece_lo"] >= -0.05 and pt["delta_ece_hi"] <= 0.05
    )
    assert cols["delta_ece_to_last"][3] == pytest.approx(ref["delta_ece"])
    assert cols["delta_ece_to_last"][-1] == 0 and cols["delta_ece_to_last_lo"][-1] == 0


def test_no_plateau_gives_the_columns_only():
    t = _terms()
    boot = {"n_boot": 50, "seed": 0, "alpha": 0.05}
    cols, pt = lens_contrasts(list(range(6)), t, np.arange(400) < 200, {}, 10, boot)
    assert pt is None and np.isfinite(cols["delta_ece_to_last"]).all()
