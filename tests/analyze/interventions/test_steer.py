"""Offline steering: exact no-op at α = 0, the dev choice, splits, baselines, transfer, CLI."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from analyze.cli import main as cli
from analyze.interventions.direction import DirectionError, DirectionMismatchError, fit_direction
from analyze.interventions.steer import run_steering
from analyze.interventions.steer_data import StoreData, choose, steer
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


def test_choose_minimises_ece_within_the_accuracy_budget():
    alphas = [-1.0, -0.5, 0.0, 0.5]
    acc = [0.50, 0.59, 0.60, 0.70]
    ece = [0.01, 0.05, 0.20, 0.10]
    assert alphas[choose(alphas, acc, ece, 0.0, 0.005)] == 0.5  # -1 and -0.5 lose too much
    assert alphas[choose(alphas, acc, [0.3, 0.3, 0.2, 0.3], 0.0, 0.005)] == 0.0
    assert alphas[choose(alphas, acc, [0.05, 0.05, 0.2, 0.3], 0.0, 0.01)] == -0.5


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
    assert methods == ["none", "direction", "temperature", "random-0", "random-1", "nullspace-k1"]
    sp = res.meta["splits"]
    assert sp["source"] == "category humanities" and sp["excluded_fit_examples"] > 0
    assert sp["n_dev"] + sp["n_test"] + sp["excluded_fit_examples"] == 120  # the humanities half
    row = res.table.row(1, named=True)
    alpha = res.meta["chosen"]["direction"]
    sweep = res.sweep.filter((pl.col("method") == "direction") & (pl.col("param") == alpha))
    assert row["ece"] == pytest.approx(sweep.filter(pl.col("split") == "test")["ece"][0])
    dev = res.sweep.filter((pl.col("method") == "direction") & (pl.col("split") == "dev"))
    acc0 = dev.filter(pl.col("param") == 0.0)["accuracy"][0]
    assert sweep.filter(pl.col("split") == "dev")["accuracy"][0] >= acc0 - 0.005 - 1e-12
    assert dev.filter(pl.col("accuracy") >= acc0 - 0.005)["ece"].min() == pytest.approx(
        sweep.filter(pl.col("split") == "dev")["ece"][0]
    )
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
