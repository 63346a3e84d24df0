"""The default fit window (a correction phase only when significant) and the control window."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.interventions import fit_data
from analyze.interventions.direction import fit_direction
from analyze.interventions.fit_data import control_window
from analyze.lens.store import open_store
from tests.analyze.interventions.planted import planted_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return planted_store(tmp_path_factory.mktemp("fitdata") / "planted.zarr")


def test_control_window_a_quarter_deep_and_never_overlapping():
    window, rule = control_window(31, (25, 30))
    assert window == (8, 13) and "(5)" in rule and "= 8" in rule and "moved" not in rule
    window, rule = control_window(8, (2, 7))  # a quarter deep is 2: overlaps, so moved earlier
    assert window == (0, 2) and "moved earlier" in rule
    window, rule = control_window(8, (5, 7))
    assert window == (2, 4) and "moved" not in rule
    window, rule = control_window(8, (4, 7))  # 2 + 3 would pass 4: ends at 4, still 3 deltas
    assert window == (1, 4) and "moved earlier" in rule
    window, rule = control_window(8, (0, 7))
    assert window is None and "starts at depth 0" in rule


def _landmarks(significant: bool):
    def fake(layers, *args, **kwargs):
        cp = {"start": 3, "end": 7, "delta_ece": -0.05, "delta_ece_lo": -0.1}
        cp |= {"delta_ece_hi": 0.01 if not significant else -0.01, "significant": significant}
        return {"correction_phase": cp, "notes": []}

    return fake


@pytest.mark.parametrize("significant", [True, False])
def test_a_correction_phase_is_the_window_only_when_significant(store, monkeypatch, significant):
    monkeypatch.setattr(fit_data, "depth_landmarks", _landmarks(significant))
    d = fit_direction(open_store(store), estimator="mean", last_m=2, n_boot=0)
    assert d.info["correction_phase"]["significant"] is significant
    if significant:
        assert d.info["window"] == [3, 7] and d.info["window_source"] == "correction_phase"
        assert d.info["window_notes"] == []
    else:
        assert d.info["window"] == [5, 7] and d.info["window_source"] == "last_m"
        notes = " ".join(d.info["window_notes"])
        assert "depths 3-7" in notes and "not significant" in notes
        assert "[-0.100, +0.010]" in notes and "last 2 layers" in notes
    explicit = fit_direction(open_store(store), window=(1, 4), n_boot=0)
    assert explicit.info["window_source"] == "explicit" and explicit.info["window_notes"] == []


def test_no_correction_phase_falls_back_with_the_landmarks_notes(store, monkeypatch):
    monkeypatch.setattr(
        fit_data, "depth_landmarks", lambda *a, **k: {"correction_phase": None, "notes": ["flat"]}
    )
    d = fit_direction(open_store(store), n_boot=0, last_m=3)
    assert d.info["window"] == [4, 7] and d.info["window_source"] == "last_m"
    assert d.info["window_notes"] == ["flat", "fell back to the last 3 layers"]
    assert d.info["correction_phase"] is None
    assert np.isfinite(d.scale).all()
