"""Online steering's baseline is the online α = 0 run, checked against the stored lens."""

from __future__ import annotations

import pytest

from analyze.calibration import logit_metrics
from analyze.cli import main as cli
from analyze.interventions.artifact import ids_sha256
from analyze.interventions.direction import fit_direction
from analyze.interventions.steer import run_steering, steering_splits
from analyze.interventions.steer_baseline import BaselineMismatchError
from analyze.interventions.steer_data import StoreData
from analyze.lens.store import open_store
from tests.analyze.interventions.planted import planted_store

KW = dict(alphas=[-0.5, 0.0, 0.5], n_random=1, n_boot=20, layer=3)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    ds = open_store(planted_store(tmp_path_factory.mktemp("base") / "s.zarr", n=240))
    d = fit_direction(ds, estimator="mean", category="humanities", fit_fraction=0.4, n_boot=0)
    return ds, d, StoreData.of(ds)


def _model(data, offset):
    """A stand-in for the model steered at depth 3: the stored last-depth lens steered along the
    vector, plus ``offset`` on option A — the model's forward differing from the stored lens."""
    calls = []

    def sweeper(rows, vec, scale, alphas):
        calls.append(list(alphas))
        z = data.sweep(rows, vec, scale, alphas)
        z[..., 0] += offset
        return z

    return sweeper, calls


def _metrics(z, data, rows):
    return logit_metrics(z[None], data.label[rows], data.mask[rows], 10)


def test_none_is_the_online_alpha0_run_and_its_difference_is_reported(setup):
    ds, d, data = setup
    sweeper, calls = _model(data, 4e-4)  # within float32's 1e-3
    res = run_steering(ds, d, sweeper=sweeper, **KW)
    base = res.meta["baseline"]
    assert base["kind"] == "online_alpha0" and base["steered_layer"] == 3
    assert base["compared_layer"] == 7 and base["tolerance"] == 1e-3
    assert base["max_abs_diff_vs_stored"] == pytest.approx(4e-4, rel=1e-6)
    assert (res.table["baseline_max_abs_diff"] == base["max_abs_diff_vs_stored"]).all()
    test = steering_splits(data, d, 0.5, 0).test
    assert ids_sha256(data.example_id[test]) == res.meta["splits"]["test_ids_sha256"]
    stored = data.lens.logits(data.h[test])
    online0 = stored.copy()
    online0[:, 0] += 4e-4
    none = res.table.row(0, named=True)
    on, st = _metrics(online0, data, test), _metrics(stored, data, test)
    assert none["mean_confidence"] == pytest.approx(float(on["mean_confidence"][0]), abs=1e-12)
    assert abs(none["mean_confidence"] - float(st["mean_confidence"][0])) > 1e-7  # (6e-7)
    temp = res.table.row(2, named=True)  # temperature scaling of the online α = 0 logits
    assert temp["method"] == "temperature" and temp["layer"] == 7
    t = res.meta["chosen"]["temperature"]
    tm = _metrics(online0 / t, data, test)
    assert temp["ece"] == pytest.approx(float(tm["ece"][0]), abs=1e-12)
    row = res.table.row(1, named=True)  # changes are against none
    assert row["d_ece"] == pytest.approx(row["ece"] - none["ece"], abs=1e-12)
    assert sum(a.count(0.0) for a in calls) == 2  # α = 0 run once per split, then reused
    rel = res.reliability.filter(res.reliability["method"] == "none")
    assert rel["count"].sum() == test.size


def test_offline_none_is_the_stored_lens(setup):
    ds, d, _ = setup
    res = run_steering(ds, d, **{**KW, "layer": None})
    base = res.meta["baseline"]
    assert base["kind"] == "stored_lens" and base["max_abs_diff_vs_stored"] == 0.0
    assert res.table["baseline"].unique().to_list() == ["stored_lens"]


def test_alpha0_beyond_the_tolerance_stops_the_run_naming_the_depths(setup):
    ds, d, data = setup
    sweeper, calls = _model(data, 5e-3)
    with pytest.raises(BaselineMismatchError, match=r"depth 3.*depth 7.*by 0\.005 \(> 0\.001"):
        run_steering(ds, d, sweeper=sweeper, **KW)
    assert len(calls) == 2  # stopped after the direction's sweep, before the controls
    # a bf16 model (or store) has the looser bf16 bound: 0.05 + 2% of the largest |logit|
    res = run_steering(ds, d, sweeper=_model(data, 5e-3)[0], model_dtype="bfloat16", **KW)
    base = res.meta["baseline"]
    assert base["tolerance"] > 0.05 and base["model_dtype"] == "bfloat16"
    assert base["max_abs_diff_vs_stored"] == pytest.approx(5e-3, rel=1e-6)


def test_the_section_and_csv_report_the_baseline(setup, tmp_path, capsys):
    ds, d, _ = setup
    folder = d.save(tmp_path / "dir")
    out = tmp_path / "steer"
    argv = ["steer", ds.encoding["source"], "--direction", str(folder), "--out", str(out)]
    assert cli([*argv, "--alphas=-0.5,0,0.5", "--random", "1", "--n-boot", "20"]) == 0
    section = (out / "section.md").read_text()
    assert "*none* is the logit lens on the stored residual at depth 7" in section
    import polars as pl

    tab = pl.read_csv(out / "steering.csv")
    assert tab["baseline"].to_list() == ["stored_lens"] * tab.height
    assert (tab["baseline_max_abs_diff"] == 0).all()


def test_online_nullspace_control_is_against_its_own_beta_1(setup):
    """The null-space control scales stored residuals; online its changes are against its own
    β = 1 (the stored lens), not the online α = 0 run (issue 17.6)."""
    from analyze.interventions.nullspace import ablate
    from analyze.interventions.svd import unembed_svd

    ds, d, data = setup
    svd = unembed_svd(ds, cache=False)
    res = run_steering(ds, d, sweeper=_model(data, 4e-4)[0], svd=svd, **KW)
    assert res.meta["references"]["nullspace"].startswith("its own β = 1")
    assert res.meta["references"]["direction"] == "none"
    test = steering_splits(data, d, 0.5, 0).test
    stored = data.lens.logits(data.h[test])
    beta = res.meta["chosen"]["nullspace"]
    null = data.lens.logits(ablate(data.h[test], svd.null_basis(1), beta))
    row = res.table.filter(res.table["method"] == "nullspace").row(0, named=True)
    mc = {k: float(_metrics(z, data, test)["mean_confidence"][0]) for k, z in
          (("null", null), ("stored", stored))}  # fmt: skip
    assert row["d_mean_confidence"] == pytest.approx(mc["null"] - mc["stored"], abs=1e-12)
    none = res.table.row(0, named=True)  # the online α = 0 run
    assert abs(row["d_mean_confidence"] - (mc["null"] - none["mean_confidence"])) > 1e-8
