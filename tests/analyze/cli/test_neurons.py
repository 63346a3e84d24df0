"""``layercal neurons``: tables, figures, section, and its place in the analysis report."""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from analyze.cli import main as cli
from tests.analyze.interventions.planted import ENTROPY_NEURON, capture_store, random_store

ISSUE_COLUMNS = ["neuron", "norm", "null_share", "logit_var", "d_ece", "d_ece_lo", "d_ece_hi"]
ISSUE_COLUMNS += ["d_nll", "d_confidence", "d_accuracy", "direct_d_ece"]


def test_neurons_on_a_capture_store_and_in_the_report(tmp_path, capsys):
    store = str(capture_store(tmp_path / "c.zarr"))
    d = tmp_path / "report" / "direction"
    assert cli(["direction", "fit", store, "-o", str(d), "--window", "2:4", "--n-boot", "2"]) == 0
    out = tmp_path / "report" / "neurons"
    args = ["neurons", store, "--out", str(out), "--direction", str(d), "--n-boot", "30"]
    assert cli([*args, "--candidates", "4", "--norm-quantile", "0.5", "--top-n", "1,2"]) == 0
    assert f"candidates: [{ENTROPY_NEURON}," in capsys.readouterr().out
    t = pl.read_csv(out / "neurons.csv")
    assert t.columns[:4] == ISSUE_COLUMNS[:4] and set(ISSUE_COLUMNS) <= set(t.columns)
    assert t.height == 32 and "direction_cosine" in t.columns
    blocks = pl.read_csv(out / "blocks.csv")
    assert blocks["layer"].to_list() == [1, 2, 3, 4]
    sets = pl.read_csv(out / "sets.csv")
    assert sets["set"].to_list() == ["top-1", "controls-1", "top-2", "controls-2", "all"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["neurons"]["candidates"][0] == ENTROPY_NEURON and meta["store_hash"]
    for fig in ("block_writes", "neuron_scan", "neuron_effects"):
        assert (out / "figures" / f"{fig}.png").is_file() and (
            out / "figures" / f"{fig}.svg"
        ).is_file()
    section = (out / "section.md").read_text()
    assert section.startswith("## Where the correction is made: blocks and neurons")
    assert "### Last-block neurons" in section and "figures/neuron_scan.png" in section
    assert "cosine between the calibration direction" in section
    assert cli(["analyze", store, "--out", str(tmp_path / "report"), "--n-boot", "10"]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    order = [md.index(h) for h in ("### Calibration direction", "### Where the correction is made")]
    assert order == sorted(order)
    assert "From neurons/section.md" in md and "(neurons/figures/neuron_scan.png)" in md
    assert "not a store of this report" not in md


def test_a_store_without_the_capture_gets_the_blocks_only(tmp_path, capsys):
    out = tmp_path / "n"
    out.mkdir()
    (out / "neurons.csv").write_text("stale\n")
    store = str(random_store(tmp_path / "r.zarr"))
    assert cli(["neurons", store, "--out", str(out), "--n-boot", "10", "--k", "2"]) == 0
    assert "--capture mlp_last" in capsys.readouterr().out
    assert (out / "blocks.csv").is_file() and not (out / "neurons.csv").exists()
    assert np.allclose(pl.read_csv(out / "blocks.csv")["k"].to_numpy(), 2)
    section = (out / "section.md").read_text()
    assert "### Which blocks write into the null space" in section
    assert "No neuron analysis" in section and "Last-block neurons" not in section
    assert cli(["analyze", store, "--out", str(tmp_path), "--n-boot", "10"]) == 0
    assert "From n/section.md" in (tmp_path / "report.md").read_text()


def test_a_direction_of_another_model_is_refused(tmp_path, capsys):
    other = str(capture_store(tmp_path / "o.zarr", hidden=16, neurons=8))
    d = tmp_path / "d"
    assert cli(["direction", "fit", other, "-o", str(d), "--window", "2:4", "--n-boot", "2"]) == 0
    store = str(capture_store(tmp_path / "c.zarr"))
    capsys.readouterr()
    assert cli(["neurons", store, "--out", str(tmp_path / "x"), "--direction", str(d)]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "hidden size 16" in err
    assert not (tmp_path / "x").exists()
