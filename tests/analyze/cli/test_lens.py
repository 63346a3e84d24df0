"""``layercal lens fit`` and the ``--lens`` option of ``analyze`` and ``summary``, through the
command line: the names the issue fixes (DIR/lens.json, the ``lens`` column of layers.csv and key
of landmarks.json), ``--lens logit`` writing what no ``--lens`` writes, lenses side by side,
the refusals; and the whole path on the real SmolLM2."""

from __future__ import annotations

import json
import re

import numpy as np
import polars as pl
import pytest

from analyze.cli import main as cli_main
from tests.analyze.lens.fitted.planted import make_store, residuals


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(
        tmp_path_factory.mktemp("cli") / "s.zarr", resid=residuals(150, 4, 8, noise=0.3)
    )


@pytest.fixture(scope="module")
def lens_dir(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("lenses") / "short"
    assert (
        cli_main(["lens", "fit", str(store), "-o", str(out), "--kind", "shortcut", "--top-k", "10"])
        == 0
    )
    return out


def test_lens_fit_writes_the_folder_and_refuses_to_overwrite(store, lens_dir, capsys):
    info = json.loads((lens_dir / "lens.json").read_text())
    assert info["kind"] == "shortcut" and info["folds"]["k"] == 5
    assert (lens_dir / "weight.npy").is_file() and (lens_dir / "fold.npy").is_file()
    before = (lens_dir / "lens.json").read_bytes()
    args = ["lens", "fit", str(store), "-o", str(lens_dir), "--kind", "temperature"]
    assert cli_main(args) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (lens_dir / "lens.json").read_bytes() == before


def test_analyze_under_a_lens_names_it_in_layers_and_landmarks(store, lens_dir, tmp_path, capsys):
    out = tmp_path / "r"
    assert (
        cli_main(
            ["analyze", str(store), "--out", str(out), "--lens", str(lens_dir), "--n-boot", "50"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    layers = pl.read_csv(out / "layers.csv")
    assert layers.columns[0] == "lens" and layers["lens"].unique().to_list() == ["short"]
    assert {"delta_ece_to_last", "delta_ece_to_last_lo", "delta_ece_to_last_hi"} <= set(
        layers.columns
    )
    marks = json.loads((out / "landmarks.json").read_text())
    assert marks["lens"]["name"] == "short" and marks["lens"]["kind"] == "shortcut"
    assert marks["lens"]["store_hash"] == layers["store_hash"][0]
    assert (
        "lens_plateau_to_last" in marks
        and "plateau_to_last" in marks
        and "lens" in marks["definitions"]
    )
    assert "lens short (shortcut)" in printed
    assert "Lenses" in (out / "report.md").read_text()


def _stamps(text: str) -> str:
    """report.md without its two timestamps (generation and the store table's 'created')."""
    text = re.sub(r"on \d{4}-\d\d-\d\d \d\d:\d\d UTC", "on T", text)
    return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", "T", text)


def test_lens_logit_writes_exactly_what_no_lens_writes(store, tmp_path):
    outs = []
    for extra in ([], ["--lens", "logit"]):
        out = tmp_path / f"r{len(outs)}"
        assert cli_main(["analyze", str(store), "--out", str(out), "--n-boot", "80", *extra]) == 0
        outs.append(out)
    a, b = outs
    for name in ("layers.csv", "landmarks.json", "reliability.npz"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    # polars' group-by sums in any order: by_group.csv differs in the last digit between runs
    ga, gb = (pl.read_csv(x / "by_group.csv") for x in outs)
    assert ga.select(pl.col(pl.String)).equals(gb.select(pl.col(pl.String)))
    np.testing.assert_allclose(
        ga.select(pl.col(pl.Float64)).to_numpy(),
        gb.select(pl.col(pl.Float64)).to_numpy(),
        rtol=1e-12,
    )
    # the report names its own folder (how to write the explorer beside it)
    md = [_stamps((x / "report.md").read_text()).replace(str(x), "OUT") for x in outs]
    assert md[0] == md[1]
    assert sorted(p.name for p in (a / ".cache").iterdir()) == sorted(
        p.name for p in (b / ".cache").iterdir()
    )


def test_several_lenses_side_by_side(store, lens_dir, tmp_path):
    temp = tmp_path / "temp"
    assert (
        cli_main(
            ["lens", "fit", str(store), "-o", str(temp), "--kind", "temperature", "--top-k", "10"]
        )
        == 0
    )
    out = tmp_path / "r"
    args = ["analyze", str(store), "--out", str(out), "--n-boot", "50"]
    assert cli_main([*args, "--lens", "logit", "--lens", str(lens_dir), "--lens", str(temp)]) == 0
    for name in ("logit", "short", "temp"):
        assert (out / name / "layers.csv").is_file(), name
    stacked = pl.read_csv(out / "layers.csv")
    assert stacked.columns[:2] == ["store", "lens"]
    assert stacked["lens"].unique(maintain_order=True).to_list() == ["logit", "short", "temp"]
    assert stacked["store"].unique().to_list() == ["s"]
    last = stacked.filter(pl.col("layer") == 3)
    assert last["accuracy"].n_unique() == 1 and last["ece"].n_unique() == 1  # the identity
    marks = json.loads((out / "landmarks.json").read_text())["stores"]
    assert [marks[k]["lens"]["name"] for k in ("logit", "short", "temp")] == [
        "logit",
        "short",
        "temp",
    ]
    report = (out / "report.md").read_text()
    assert "## Lenses" in report and "lenses_over_depth.png" in report
    assert (out / "figures" / "lenses_over_depth.svg").is_file()


def test_a_lens_of_another_store_is_refused_with_what_to_do(lens_dir, tmp_path, capsys):
    other = make_store(
        tmp_path / "o.zarr",
        resid=residuals(40, 4, 8, seed=3),
        dataset="other",
        example_ids=[f"o/{i}" for i in range(40)],
    )
    out = tmp_path / "r"
    assert cli_main(["analyze", str(other), "--out", str(out), "--lens", str(lens_dir)]) == 1
    err = capsys.readouterr().err
    assert "not on this store" in err and "--transfer" in err and not out.exists()
    assert cli_main(["summary", str(other), "--lens", str(lens_dir)]) == 1
    assert cli_main(["summary", str(other), "--lens", str(lens_dir), "--transfer"]) == 0
    assert "lens short (shortcut)" in capsys.readouterr().out
    assert (
        cli_main(
            [
                "analyze",
                str(other),
                "--out",
                str(out),
                "--lens",
                str(lens_dir),
                "--transfer",
                "--n-boot",
                "20",
            ]
        )
        == 0
    )
    assert json.loads((out / "landmarks.json").read_text())["lens"]["transfer"] is True


def test_summary_under_a_lens_agrees_with_analyze(store, lens_dir, tmp_path, capsys):
    assert cli_main(["summary", str(store), "--lens", str(lens_dir)]) == 0
    rows = [
        line.split() for line in capsys.readouterr().out.splitlines() if re.match(r"\s+\d+\s", line)
    ]
    out = tmp_path / "r"
    assert (
        cli_main(
            ["analyze", str(store), "--out", str(out), "--lens", str(lens_dir), "--n-boot", "20"]
        )
        == 0
    )
    layers = pl.read_csv(out / "layers.csv")
    for row, acc, ece in zip(rows, layers["accuracy"], layers["ece"]):
        assert float(row[1]) == pytest.approx(acc, abs=6e-4) and float(row[2]) == pytest.approx(
            ece, abs=6e-4
        )


def test_every_kind_on_the_real_smollm2_store(smol_store_path, tmp_path, capsys):
    """End to end on a real model's store: fit each kind, analyse under all of them."""
    lenses = []
    for kind in ("temperature", "shortcut", "tuned"):
        out = tmp_path / kind
        args = ["lens", "fit", str(smol_store_path), "-o", str(out), "--kind", kind]
        folds = "2" if kind == "tuned" else "4"  # tuned: a smoke run (L-BFGS costs ~1 s a fit)
        assert cli_main([*args, "--folds", folds, "--max-iter", "2", "--top-k", "32"]) == 0, kind
        lenses += ["--lens", str(out)]
        rows = json.loads((out / "lens.json").read_text())["diagnostics"]["per_depth"]
        assert len(rows) == 31 and rows[-1]["kl_to_final"] == pytest.approx(0, abs=1e-9)
        assert all(np.isfinite(r["kl_to_final"]) and 0 <= r["top1_agreement"] <= 1 for r in rows)
    out = tmp_path / "r"
    args = ["analyze", str(smol_store_path), "--out", str(out), "--n-boot", "50", "--lens", "logit"]
    assert cli_main([*args, *lenses]) == 0
    stacked = pl.read_csv(out / "layers.csv")
    assert stacked.height == 4 * 31
    for col in ("accuracy", "ece", "nll", "mean_confidence", "kl_to_last"):
        assert stacked[col].is_finite().all(), col
    last = stacked.filter(pl.col("layer") == 30)
    assert last["accuracy"].n_unique() == 1 and last["mean_confidence"].n_unique() == 1
    metas = [json.loads((out / name / "meta.json").read_text()) for name in ("shortcut", "tuned")]
    assert all(m["checks"]["ok"] for m in metas)  # the lens at the last depth = the model's logits
