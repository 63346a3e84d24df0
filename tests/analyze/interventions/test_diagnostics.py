"""A direction's diagnostics with their control: the same estimator on an early window."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from analyze.cli import main as cli
from analyze.interventions.diagnostics import category_cosines, compare_store
from analyze.interventions.direction import Direction, fit_direction
from analyze.lens.store import open_store
from analyze.report.numbers import num
from tests.analyze.interventions.planted import planted_direction, planted_store


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diag")
    return {
        "shared": planted_store(tmp / "shared.zarr", n=200),  # every layer steps along u
        "early": planted_store(tmp / "early.zarr", n=200, early=4),  # depths 1-4 along u_early
        "other": planted_store(tmp / "other.zarr", n=120, seed=5),  # same model, other data
    }


def test_control_of_a_shared_update_is_as_high_as_the_window(stores):
    """Every layer steps along u: the control finds u too, so a cosine of ~1 across categories
    on the window is matched by the control, which is what the control is there to show."""
    ds = open_store(stores["shared"])
    d = fit_direction(ds, estimator="pca", window=(4, 7), n_boot=0)
    u = planted_direction(24)
    assert d.info["control_window"] == [1, 4]  # a quarter of 7 deep, moved before the window
    ctrl = d.info["diagnostics"]["control"]
    assert ctrl["window"] == [1, 4] and "quarter" in ctrl["rule"]
    assert abs(d.control @ u) > 0.95 and ctrl["cosine_to_direction"] > 0.95
    assert len(ctrl["explained_variance"]) == 10 and ctrl["explained_variance"][0] > 0.5
    cc = category_cosines(ds, d)
    assert cc["categories"] == ["humanities", "other", "stem"] and cc["control_window"] == [1, 4]
    assert np.shape(cc["matrix_control"]) == (3, 3) and len(cc["cosine_to_control"]) == 3
    assert cc["mean_pairwise_cosine"] > 0.9 and cc["mean_pairwise_cosine_control"] > 0.9
    cmp = compare_store(d, open_store(stores["other"]), "other")
    assert cmp["cosine"] > 0.9 and cmp["cosine_control"] > 0.9 and cmp["control_window"] == [1, 4]


def test_control_of_another_early_update_differs_from_the_window(stores):
    ds = open_store(stores["early"])
    d = fit_direction(ds, estimator="mean", window=(4, 7), n_boot=0)
    u, u_early = planted_direction(24), planted_direction(24, seed=8)
    assert d.vector @ u > 0.95 and d.control @ u_early > 0.95
    ctrl = d.info["diagnostics"]["control"]
    assert ctrl["cosine_to_direction"] == pytest.approx(float(d.vector @ d.control))
    assert abs(ctrl["cosine_to_direction"] - float(u @ u_early)) < 0.1
    cc = category_cosines(ds, d)
    assert cc["mean_pairwise_cosine"] > 0.9 and cc["mean_pairwise_cosine_control"] > 0.9
    assert all(c > 0.9 for c in cc["cosine_to_control"])  # each category's control: u_early


def test_artifact_keeps_the_control_and_both_spectra(stores, tmp_path):
    d = fit_direction(open_store(stores["shared"]), estimator="pca", window=(4, 7), n_boot=0)
    back = Direction.load(d.save(tmp_path / "d"))
    np.testing.assert_array_equal(back.control, d.control)
    np.testing.assert_array_equal(back.explained, d.explained)
    np.testing.assert_array_equal(back.explained_pooled, d.explained_pooled)
    diag = d.info["diagnostics"]
    assert diag["explained_variance"] == d.explained.tolist()
    assert diag["explained_variance_pooled"] == d.explained_pooled.tolist()
    assert 0 <= diag["between_layer_share"] <= 1
    d0 = fit_direction(open_store(stores["shared"]), window=(0, 3), n_boot=0)
    assert d0.control is None and d0.info["control_window"] is None
    assert "starts at depth 0" in d0.info["diagnostics"]["control"]["rule"]
    assert category_cosines(open_store(stores["shared"]), d0)["matrix_control"] == []


def test_a_pca_fit_decomposes_each_window_once(stores, monkeypatch):
    """The pca fit and its spectra share one eigendecomposition of the per-layer-centred deltas:
    per window (fit and control) one of those and one of the pooled-centred deltas."""
    calls, eigh = [], np.linalg.eigh
    monkeypatch.setattr(np.linalg, "eigh", lambda a: calls.append(a.shape) or eigh(a))
    d = fit_direction(open_store(stores["shared"]), estimator="pca", window=(4, 7), n_boot=0)
    assert d.control is not None and len(calls) == 4


def test_cli_writes_both_spectra_and_the_control_in_tables_and_section(stores, tmp_path, capsys):
    out = tmp_path / "dir"
    argv = ["direction", "fit", str(stores["shared"]), "-o", str(out), "--estimator", "pca"]
    argv += ["--window", "4:7", "--n-boot", "2", "--compare", f"other={stores['other']}"]
    assert cli(argv) == 0, capsys.readouterr().err
    ev = pl.read_csv(out / "explained_variance.csv")
    assert ev.columns == ["component", "share", "share_pooled", "share_control"]
    info = json.loads((out / "direction.json").read_text())
    diag = info["diagnostics"]
    np.testing.assert_allclose(ev["share_pooled"].to_numpy(), diag["explained_variance_pooled"])
    np.testing.assert_allclose(
        ev["share_control"].to_numpy(), diag["control"]["explained_variance"]
    )
    cc = pl.read_csv(out / "category_cosines.csv")
    assert cc.columns == ["categories", "n_fit", "cosine_to_direction", "cosine_to_control"]
    section = (out / "section.md").read_text()
    assert "centred per layer" in section and "centred on the pooled mean" in section
    assert "control: the same estimator on the early window, depths 1–4" in section
    assert num(diag["compare"][0]["cosine_control"], 3, signed=True) in section
    assert "on the control window" in section and "| control window |" in section
