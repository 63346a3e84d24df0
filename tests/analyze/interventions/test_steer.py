"""Offline steering: exact no-op at α = 0, the dev choice, splits, controls, transfer, truncated
depths, a planted effect found and a calibrated store left alone, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from analyze.cli import main as cli
from analyze.interventions.direction import DirectionError, DirectionMismatchError, fit_direction
from analyze.interventions.steer import run_steering
from analyze.interventions.steer_data import StoreData, steer
from analyze.interventions.svd import unembed_svd
from analyze.lens.store import open_store
from tests.analyze.interventions.planted import planted_store


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("steer")
    return {
        "main": planted_store(tmp / "main.zarr", n=240),
        "same_model": planted_store(tmp / "same.zarr", n=80, seed=5),  # same W_U, other data
        "other_model": planted_store(tmp / "other.zarr", n=40, hidden=16),
    }


@pytest.fixture(scope="module")
def direction(stores):
    return fit_direction(
        open_store(stores["main"]),
        estimator="mean",
        category="humanities",
        fit_fraction=0.4,
        n_boot=0,
    )


def test_alpha_zero_is_an_exact_no_op(stores, direction):
    data = StoreData.of(open_store(stores["main"]))
    assert steer(data.h, direction.vector, 0.0, 123.0) is data.h
    rows = np.arange(10)
    z = data.sweep(rows, direction.vector, 50.0, [0.0, 0.5])
    np.testing.assert_array_equal(z[0], data.lens.logits(data.h[rows]))
    assert np.abs(z[1] - z[0]).max() > 1e-3
    np.testing.assert_allclose(
        steer(data.h[:2], direction.vector, 0.5, 4.0) - data.h[:2],
        np.tile(2 * direction.vector, (2, 1)),
    )


def test_run_steering_splits_baselines_and_tables(stores, direction):
    ds = open_store(stores["main"])
    res = run_steering(
        ds,
        direction,
        alphas=[-0.5, 0.0, 0.5],
        n_random=2,
        n_boot=50,
        svd=unembed_svd(ds, cache=False),
        transfer=[("same", open_store(stores["same_model"]))],
    )
    methods = res.table["method"].to_list()
    assert methods == [
        "none",
        "direction",
        "temperature",
        "nullspace",
        "random-0",
        "random-1",
        "direction+temperature",
    ]
    assert res.meta["k"] == 1 and res.meta["select"] == "nll"
    sp = res.meta["splits"]
    assert sp["source"] == "category humanities" and sp["excluded_fit_examples"] > 0
    assert sp["n_dev"] + sp["n_test"] + sp["excluded_fit_examples"] == 120  # the humanities half
    row = res.table.row(1, named=True)
    alpha = res.meta["chosen"]["direction"]
    sweep = res.sweep.filter((pl.col("method") == "direction") & (pl.col("param") == alpha))
    assert row["ece"] == pytest.approx(sweep.filter(pl.col("split") == "test")["ece"][0])
    dev = res.sweep.filter((pl.col("method") == "direction") & (pl.col("split") == "dev"))
    # the rule: the smallest dev NLL among the α whose Δaccuracy interval's lower bound on dev
    # is above -0.02 (α = 0 always allowed)
    keeps = (dev["d_accuracy_lo"] > -0.02) | (dev["param"] == 0.0)
    assert dev["keeps_accuracy"].to_list() == keeps.to_list()
    assert dev["objective"].to_list() == dev["nll"].to_list()
    chosen_dev = sweep.filter(pl.col("split") == "dev")
    assert chosen_dev["keeps_accuracy"][0]
    assert dev.filter(keeps)["nll"].min() == pytest.approx(chosen_dev["nll"][0], abs=0)
    none = res.table.row(0, named=True)
    assert none["d_ece"] == 0 and none["ece_lo"] <= none["ece"] <= none["ece_hi"]
    assert set(res.reliability["method"]) == {"none", "direction", "temperature"}
    assert res.reliability.filter(pl.col("method") == "none")["count"].sum() == sp["n_test"]
    targets = set(res.transfer["target"])
    assert targets == {"category humanities", "category stem", "category other", "same"}
    same = res.transfer.filter(pl.col("target") == "same")
    ids = open_store(stores["same_model"])["example_id"].values.tolist()
    overlap = len(set(ids) & set(direction.fit_ids.tolist()))  # same ids: the fit ones are left out
    assert overlap > 0 and same["n"][0] == 80 - overlap
    assert "direction" in same["method"].to_list()


def test_sweeper_path_and_layer_checks(stores, direction):
    ds = open_store(stores["main"])
    data = StoreData.of(ds)
    calls = []

    def sweeper(rows, vec, scale, alphas):
        calls.append(len(alphas))
        return data.sweep(rows, vec, scale, alphas)

    kw = dict(alphas=[-0.5, 0.0, 0.5], n_random=1, n_boot=0)
    a = run_steering(ds, direction, **kw)
    b = run_steering(ds, direction, sweeper=sweeper, **kw)
    assert calls == [3, 3, 2, 2]  # direction (dev, test); the random one reuses their α = 0
    assert a.table.drop("baseline").equals(b.table.drop("baseline"))
    assert a.meta["mode"] == "offline" and b.meta["mode"] == "online"
    assert a.table["baseline"].unique().to_list() == ["stored_lens"]
    assert b.table["baseline"].unique().to_list() == ["online_alpha0"]
    with pytest.raises(DirectionError, match="--online"):
        run_steering(ds, direction, layer=3, **kw)
    with pytest.raises(DirectionMismatchError, match="hidden size"):
        run_steering(open_store(stores["other_model"]), direction, **kw)


def test_cli_direction_fit_steer_and_nullspace(stores, tmp_path, capsys):
    store = str(stores["main"])
    d = tmp_path / "dir"
    assert (
        cli(
            [
                "direction",
                "fit",
                store,
                "-o",
                str(d),
                "--estimator",
                "pca",
                "--window",
                "3:7",
                "--category",
                "humanities",
                "--n-boot",
                "4",
                "--compare",
                f"same={stores['same_model']}",
            ]
        )
        == 0
    )
    info = json.loads((d / "direction.json").read_text())
    assert info["estimator"] == "pca" and info["window"] == [3, 7]
    assert info["diagnostics"]["compare"][0]["store"] == "same"
    assert 0 <= info["diagnostics"]["null_space_share"]["share"] <= 1
    assert (d / "section.md").read_text().startswith("## Calibration direction")
    assert (d / "figures" / "explained_variance.png").is_file()
    assert set(info["diagnostics"]["category_cosines"]["categories"]) == {
        "humanities",
        "stem",
        "other",
    }

    out = tmp_path / "steer"
    assert (
        cli(
            [
                "steer",
                store,
                "--direction",
                str(d),
                "--out",
                str(out),
                "--alphas=-0.5,0.5",
                "--random",
                "1",
                "--n-boot",
                "20",
                "--transfer",
                f"same={stores['same_model']}",
            ]
        )
        == 0
    )
    for name in ("steering.csv", "sweep.csv", "reliability.csv", "transfer.csv", "meta.json"):
        assert (out / name).is_file(), name
    for fig in ("alpha_sweep", "reliability", "transfer"):
        assert (out / "figures" / f"{fig}.svg").is_file(), fig
    section = (out / "section.md").read_text()
    assert (
        "| direction |" in section
        and "Transfer" in section
        and "figures/reliability.png" in section
    )
    assert pl.read_csv(out / "steering.csv")["method"][0] == "none"

    ns = tmp_path / "ns"
    assert (
        cli(
            [
                "nullspace",
                store,
                "--out",
                str(ns),
                "--fractions",
                "0.05,0.2",
                "--random",
                "1",
                "--n-boot",
                "10",
                "--vocab-examples",
                "4",
                "--layers",
                "6,7",
            ]
        )
        == 0
    )
    abl = pl.read_csv(ns / "ablation.csv")
    assert set(abl["layer"]) == {6, 7} and set(abl["k"]) == {1, 5}
    assert "## Null space of the unembedding" in (ns / "section.md").read_text()

    # `layercal analyze --out` the same folder takes the three sections into its report
    assert cli(["analyze", store, "--out", str(tmp_path), "--n-boot", "20", "--no-cache"]) == 0
    md = (tmp_path / "report.md").read_text()
    order = [
        md.index(h)
        for h in (
            "## Further analyses",
            "### Null space of the unembedding",
            "### Calibration direction",
            "From steer/section.md",
        )
    ]
    assert order == sorted(order)
    assert "(ns/figures/" in md and "(steer/figures/reliability.png)" in md
    page = (tmp_path / "report.html").read_text()
    assert "<h3>Calibration direction</h3>" in page and "| direction |" not in page
    n_img = page.count("data:image/png;base64")
    assert n_img >= len(list(tmp_path.glob("*/figures/*.png")))
    assert "not a store of this report" not in md
    # the same folder analysed for another store: the direction section says it is foreign
    other = str(stores["other_model"])
    assert cli(["analyze", other, "--out", str(tmp_path), "--n-boot", "20", "--no-cache"]) == 0
    assert "not a store of this report" in (tmp_path / "report.md").read_text()

    capsys.readouterr()
    bad = tmp_path / "bad"
    assert cli(["steer", str(stores["other_model"]), "--direction", str(d), "--out", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "hidden size 24" in err and "direction fit" in err


def test_truncated_reads_the_lens_at_the_steered_depth(stores, direction):
    """--layer 5 --truncated: none, the direction, temperature and the null space all at depth
    5 of the stored residuals, by the formula; transfer there too."""
    from analyze.calibration import fit_temperature
    from analyze.interventions.nullspace import ablate
    from analyze.interventions.steer import steering_splits
    from tests.analyze.interventions.formulas import metrics_formula

    ds = open_store(stores["main"])
    svd = unembed_svd(ds, cache=False)
    kw = dict(alphas=[-0.5, 0.0, 0.5], n_random=1, n_boot=20, svd=svd)
    res = run_steering(
        ds, direction, layer=5, truncated=True, transfer=[("same", open_store(stores["same_model"]))], **kw
    )  # fmt: skip
    assert res.meta["read_layer"] == 5 and res.meta["truncated"] and res.meta["layer"] == 5
    assert set(res.table["layer"]) == {5}
    data5 = StoreData.at(ds, 5)
    sp = steering_splits(data5, direction, 0.5, 0)
    lab = data5.label[sp.test]
    h = data5.h[sp.test]
    rows = {r["method"]: r for r in res.table.iter_rows(named=True)}
    alpha, beta = res.meta["chosen"]["direction"], res.meta["chosen"]["nullspace"]
    t = fit_temperature(data5.lens.logits(data5.h[sp.dev]), data5.label[sp.dev])
    expect = {
        "none": data5.lens.logits(h),
        "direction": data5.lens.logits(h + alpha * direction.scale_at(5) * direction.at(5)),
        "temperature": data5.lens.logits(h) / t,
        "nullspace": data5.lens.logits(ablate(h, svd.null_basis(1), beta)),
    }
    for name, z in expect.items():
        m = metrics_formula(z, lab)
        for k in ("accuracy", "ece", "nll", "brier"):
            assert rows[name][k] == pytest.approx(m[k], abs=1e-9), (name, k)
    assert res.meta["chosen"]["temperature"] == pytest.approx(t, rel=1e-9)
    assert res.meta["baseline"]["compared_layer"] == 5
    assert "same" in set(res.transfer["target"]) and "direction" in set(res.transfer["method"])
    last = run_steering(ds, direction, **kw)
    assert last.table["nll"][0] != res.table["nll"][0]  # depth 7 is another lens
    with pytest.raises(DirectionError, match="--truncated"):
        run_steering(ds, direction, layer=5, **kw)
    with pytest.raises(DirectionError, match="drop --online"):
        run_steering(ds, direction, layer=5, truncated=True, sweeper=StoreData.of(ds).sweep, **kw)


@pytest.mark.parametrize("overconfident", [True, False])
def test_a_planted_effect_is_found_and_a_calibrated_store_is_left_alone(tmp_path, overconfident):
    """On a store whose last layer is overconfident, with a direction in N_1 (a pure
    temperature), the direction and temperature scaling improve NLL and Brier with intervals
    that exclude 0; on a calibrated store, nothing improves any endpoint."""
    from analyze.interventions.steer_power import ENDPOINTS, verdict
    from tests.analyze.interventions.planted import confidence_store

    ds = open_store(confidence_store(tmp_path / "s.zarr", n=800, overconfident=overconfident))
    d = fit_direction(ds, estimator="pca", category="humanities", n_boot=0)
    res = run_steering(ds, d, n_random=5, n_boot=500, svd=unembed_svd(ds, cache=False))
    rows = {r["method"]: r for r in res.table.iter_rows(named=True)}
    if overconfident:
        assert res.meta["chosen"]["direction"] > 0  # more of N_1: a lower confidence
        for name in ("direction", "temperature", "direction+temperature"):
            for k in ("nll", "brier"):
                assert verdict(rows[name], k) == "improved", (name, k)
    else:
        for name in ("direction", "temperature", "direction+temperature"):
            assert {verdict(rows[name], k) for k in ENDPOINTS} <= {"no effect", "worse"}, name


def test_cli_steer_rule_options_truncated_and_the_verdicts(stores, direction, tmp_path, capsys):
    store = str(stores["main"])
    folder = direction.save(tmp_path / "dir")
    base = ["steer", store, "--direction", str(folder), "--alphas=-0.5,0.5", "--n-boot", "30"]
    out = tmp_path / "ece"
    argv = [*base, "--out", str(out), "--select", "ece", "--accuracy-margin", "0.05"]
    assert cli([*argv, "--random", "2", "--layer", "6", "--truncated"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["select"] == "ece" and meta["accuracy_margin"] == 0.05
    assert meta["selection"]["accuracy_rule"] == "interval" and meta["max_accuracy_drop"] is None
    assert meta["read_layer"] == 6 and meta["truncated"] is True
    tab = pl.read_csv(out / "steering.csv")
    assert tab["method"].to_list() == [
        "none",
        "direction",
        "temperature",
        "nullspace",
        "random-0",
        "random-1",
        "direction+temperature",
    ]
    for col in ("d_nll_mde", "d_brier_mde", "d_ece_mde", "d_accuracy_mde", "mde_param"):
        assert col in tab.columns, col
    sweep = pl.read_csv(out / "sweep.csv")
    dev = sweep.filter((pl.col("method") == "direction") & (pl.col("split") == "dev"))
    assert dev["objective"].to_list() == dev["ece"].to_list()
    contrasts = pl.read_csv(out / "contrasts.csv")
    assert contrasts["method"].to_list() == ["direction", "direction+temperature"]
    section = (out / "section.md").read_text()
    assert "read through the lens at depth 6 (the model truncated there" in section
    assert "the smallest ECE on dev" in section and "above −0.05" in section
    assert "| direction − temperature |" in section and "MDE: the minimum detectable" in section
    verdicts = [line for line in section.splitlines() if line.startswith("| random-0 |")]
    assert any(("no effect" in v or "improved" in v or "worse" in v) for v in verdicts)
    assert "'MDE" not in section and "; MDE " in section  # beside each "no effect"
    # the deprecated fixed rule still runs, and says so
    capsys.readouterr()
    old = tmp_path / "old"
    assert cli([*base, "--out", str(old), "--max-accuracy-drop", "0.005", "--random", "0"]) == 0
    assert "--max-accuracy-drop is deprecated" in capsys.readouterr().err
    meta = json.loads((old / "meta.json").read_text())
    assert meta["selection"]["accuracy_rule"] == "fixed_drop" and meta["max_accuracy_drop"] == 0.005
    # --truncated reads stored residuals: --online with it is a usage error, before any model
    bad = tmp_path / "bad"
    argv = [*base, "--out", str(bad), "--layer", "6", "--truncated", "--online", "--model", "x"]
    assert cli(argv) == 1
    assert "drop --online" in capsys.readouterr().err and not bad.exists()
