"""The default fit window (the correction phase of the fit examples only when it is a significant
fall in ECE) and the control window."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from analyze.calibration import depth_landmarks, selection_half
from analyze.interventions import fit_data
from analyze.interventions.direction import fit_direction
from analyze.interventions.fit_data import control_window
from analyze.lens import AnswerLens
from analyze.lens.store import open_store
from tests.analyze.interventions.planted import planted_store


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return open_store(planted_store(tmp_path_factory.mktemp("fit") / "planted.zarr"))


def _phase(significant: bool, delta: float) -> dict[str, Any]:
    return {
        "start": 3,
        "end": 7,
        "delta_ece": delta,
        "delta_ece_lo": delta - 0.05,
        "delta_ece_hi": delta + 0.05 if significant else 0.01,
        "significant": significant,
        "n_test": 40,
    }


@pytest.mark.parametrize(
    ("significant", "delta", "window", "source"),
    [
        (True, -0.2, (3, 7), "correction_phase"),
        (False, -0.02, (4, 7), "last_m"),  # the interval includes 0
        (True, 0.2, (4, 7), "last_m"),  # ECE rises significantly: not a correction
    ],
)
def test_window_is_the_phase_only_when_it_is_a_significant_fall(
    ds, monkeypatch, significant, delta, window, source
):
    seen: dict[str, Any] = {}

    def fake(*args: Any, **kw: Any) -> dict[str, Any]:
        seen.update(kw, n=args[1].shape[1])
        return {"correction_phase": _phase(significant, delta), "notes": []}

    monkeypatch.setattr(fit_data, "depth_landmarks", fake)
    rows = np.arange(0, 160, 2)
    choice = fit_data.choose_window(ds, rows, AnswerLens.of(ds), 3, seed=5)
    got, how, notes = choice.window, choice.source, choice.notes
    assert got == window and how == source
    if source == "last_m":
        assert "not a significant fall in ECE" in notes[0] and "on 40 test examples" in notes[0]
        assert notes[-1] == "fell back to the last 3 layers"
    else:
        assert notes == []
    # chance from the mask of those examples (4 options each), the halves split per subject
    assert seen["chance"] == 0.25 and seen["n"] == rows.size
    assert seen["selection"].sum() == rows.size // 2 and seen["seed"] == 5


def test_default_window_on_a_store_records_why(ds):
    d = fit_direction(ds, estimator="mean", n_boot=0, last_m=3)
    rows = np.flatnonzero(fit_data.fit_split(ds, 0.5, 0))
    lens = AnswerLens.of(ds)
    label = ds["label"].values[rows]
    mask = ds["choice_mask"].values[rows]
    h = ds["resid"].values[rows].astype(np.float64)
    conf, correct = (
        np.stack(x)
        for x in zip(*(fit_data.conf_correct(lens.logits(h[:, i]), label, mask) for i in range(8)))
    )
    marks = depth_landmarks(
        np.arange(8),
        conf,
        correct.astype(float),
        chance=0.25,
        selection=selection_half(ds["subject"].values[rows], ds["example_id"].values[rows], 0),
        n_boot=200,
        seed=0,
    )
    cp = marks["correction_phase"]
    if cp is not None and cp["significant"] and cp["delta_ece"] < 0:
        assert d.info["window_source"] == "correction_phase"
        assert d.info["window"] == [cp["start"], cp["end"]]
    else:
        assert d.info["window_source"] == "last_m" and d.info["window"] == [4, 7]
        assert d.info["window_notes"][-1] == "fell back to the last 3 layers"


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
        cp = {"start": 3, "end": 7, "delta_ece": -0.05, "delta_ece_lo": -0.1, "n_test": 40}
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
        assert "(3, 7]" in notes and "not a significant fall" in notes
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
