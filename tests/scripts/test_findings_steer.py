"""scripts/findings.py's issue 17 steps (scripts/findings_steer.py) on planted stores: the
files and rows the findings data needs, a planted effect found and a null left alone.

The "MMLU" store is overconfident at its last layers and its direction lies in N_1 (a pure
temperature: steering helps); the "TruthfulQA" store of the same model is calibrated at its last
layer (labels drawn from the lens's own probabilities: nothing should help there)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
import pytest

from tests.analyze.interventions.planted import confidence_store

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import findings  # noqa: E402
import findings_steer  # noqa: E402

ROWS = ["none", "direction", "temperature", "nullspace"]
ROWS += [f"random-{i}" for i in range(5)] + ["direction+temperature"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("findings-steer")
    mmlu = confidence_store(tmp / "mmlu.zarr", n=800)
    tqa = confidence_store(
        tmp / "tqa.zarr", n=600, seed=3, overconfident=False, dataset="truthfulqa"
    )
    out = tmp / "out"
    argv = ["--mmlu", str(mmlu), "--truthfulqa", str(tqa), "--out", str(out), "--n-boot", "300"]
    argv += ["--label", "model a", "--truncated-layers", "6", "--overconfident", str(mmlu)]
    argv += ["--only", "direction,truthfulqa,truncated,overconfident"]
    assert findings.main(argv) == 0
    return out


def _rows(path):
    return {r["method"]: r for r in pl.read_csv(path).iter_rows(named=True)}


def test_files_and_rows(run):
    out = run
    folders = {
        "truthfulqa-transfer": out / "steer-truthfulqa-transfer",
        "truthfulqa-indomain": out / "steer-truthfulqa-indomain",
        "overconfident": out / "overconfident" / "steer",
    }
    for name, folder in folders.items():
        tab = pl.read_csv(out / f"steer-model-a-{name}.csv")
        assert tab["method"].to_list() == ROWS, name
        # steering.csv's columns, unchanged and extended
        for col in ("layer", "param", "n", "ece", "d_ece_lo", "d_nll_hi", "d_brier", "baseline"):
            assert col in tab.columns, (name, col)
        assert tab.equals(pl.read_csv(folder / "steering.csv"))
        contrasts = pl.read_csv(out / f"steer-model-a-{name}-contrasts.csv")
        assert contrasts["method"].to_list() == ["direction", "direction+temperature"]
        assert set(contrasts["reference"]) == {"temperature"}
    truncated = pl.read_csv(out / "steer-model-a-truncated.csv")
    assert set(truncated["store"]) == {"mmlu", "truthfulqa"} and set(truncated["depth"]) == {6}
    for store, source in (("mmlu", "truthfulqa"), ("truthfulqa", "mmlu")):
        part = truncated.filter(pl.col("store") == store)
        assert part["method"].to_list() == ROWS and set(part["direction_from"]) == {source}
        assert set(part["layer"]) == {6}  # steered and read at depth 6, the controls too
    summary = json.loads((out / "steer-model-a.json").read_text())
    found = json.loads((out / "findings.json").read_text())
    assert found["steer_tests"] == summary
    assert summary["truthfulqa"]["transfer"]["direction_store"] == "another store of the same model"
    assert summary["truthfulqa"]["indomain"]["direction_store"] == "this store"
    sp = summary["truthfulqa"]["indomain"]["splits"]
    assert sp["excluded_fit_examples"] == 200 and sp["n_dev"] == sp["n_test"] == 200  # thirds
    assert summary["truncated"]["mmlu-L6"]["read_layer"] == 6
    assert all(v["rc"] == 0 for v in found["steps"].values())


def _check_verdicts(rows):
    """The JSON's verdicts follow the CSV's intervals."""
    for r in rows:
        if r["method"] == "none":
            continue
        assert r["verdicts"]["nll"] == (
            "improved" if r["d_nll_hi"] < 0 else "worse" if r["d_nll_lo"] > 0 else "no effect"
        )


def test_a_planted_effect_is_detected(run):
    """Overconfident MMLU: the direction lowers NLL and Brier with intervals below 0, at the last
    layer and read at depth 6 with the TruthfulQA direction (fit on another store)."""
    summary = json.loads((run / "steer-model-a.json").read_text())
    over = {r["method"]: r for r in summary["overconfident"]["offline"]["rows"]}
    assert over["direction"]["verdicts"]["nll"] == "improved"
    assert over["direction"]["verdicts"]["brier"] == "improved"
    assert over["temperature"]["verdicts"]["nll"] == "improved"
    trunc = {r["method"]: r for r in summary["truncated"]["mmlu-L6"]["rows"]}
    assert summary["truncated"]["mmlu-L6"]["chosen"]["direction"] > 0
    assert trunc["direction"]["verdicts"]["nll"] == "improved"
    for run_rows in (summary["overconfident"]["offline"]["rows"], trunc.values()):
        _check_verdicts(list(run_rows))


def test_a_null_is_not_detected(run):
    """Calibrated TruthfulQA at its last layer: neither the transferred nor the in-domain
    direction improves any endpoint; every "no effect" has its MDE."""
    summary = json.loads((run / "steer-model-a.json").read_text())
    for kind in ("transfer", "indomain"):
        rows = {r["method"]: r for r in summary["truthfulqa"][kind]["rows"]}
        for name in ("direction", "direction+temperature"):
            assert "improved" not in rows[name]["verdicts"].values(), (kind, name)
        d = rows["direction"]
        for k in ("nll", "brier", "ece"):
            if d["verdicts"][k] == "no effect":
                assert d[f"d_{k}_mde"] > 0, (kind, k)
        _check_verdicts(list(rows.values()))


def test_truncated_depths_and_online_depths():
    layers = {"mmlu": {"last_layer": 28, "landmarks": {"plateau_layer": 24}}}
    assert findings_steer.truncated_depths("auto", layers) == [24, 25, 26, 27]
    layers["mmlu"]["landmarks"]["plateau_layer"] = 10  # at most the 4 depths before the last
    assert findings_steer.truncated_depths("auto", layers) == [24, 25, 26, 27]
    assert findings_steer.truncated_depths("22,23", layers) == [22, 23]
    assert findings_steer.truncated_depths("auto", {}) == []
    cp = {"correction_phase": {"start": 24, "end": 28}}
    assert findings_steer.online_depths("auto", cp, {"layer": 28}) == [26, 28]
    assert findings_steer.online_depths("auto", {}, {"layer": 28}) == [28]
    assert findings_steer.slug("model a/b") == "model-a-b"


def test_overconfident_step_runs_the_online_check_tiny_model(tmp_path, tiny_llama_dir, data_dir):
    """The online check of item 3 through findings.py: `steer --online` at the last depth and
    one inside the model, with --limit and the dev rule, on a tiny random model's store."""
    from extract.run import ExtractConfig, extract

    store = tmp_path / "tiny.zarr"
    cfg = ExtractConfig(
        model=str(tiny_llama_dir),
        dataset="mmlu",
        out=str(store),
        subjects=["formal_logic", "astronomy"],
        data_dir=str(data_dir),
        limit=40,
        batch_size=8,
        dtype="float32",
        progress=False,
    )
    assert extract(cfg).complete
    out = tmp_path / "out"
    argv = ["--mmlu", str(store), "--out", str(out), "--n-boot", "30", "--label", "tiny"]
    argv += ["--overconfident", str(store), "--model", str(tiny_llama_dir), "--dtype", "float32"]
    argv += ["--overconfident-layers", "4,2", "--overconfident-limit", "3", "--online-random", "1"]
    argv += ["--only", "overconfident"]
    assert findings.main(argv) == 0
    summary = json.loads((out / "steer-tiny.json").read_text())["overconfident"]
    assert set(summary["online"]) == {"2", "4"}
    for depth in (2, 4):
        run = summary["online"][str(depth)]
        assert run["mode"] == "online" and run["layer"] == depth and run["select"] == "nll"
        assert run["splits"]["n_test"] == 3 and run["splits"]["limit"] == 3
        tab = pl.read_csv(out / f"steer-tiny-overconfident-online-L{depth}.csv")
        assert tab["method"].to_list()[:2] == ["none", "direction"]
        assert "random-0" in tab["method"].to_list() and "direction+temperature" in tab["method"]
        assert set(tab["baseline"]) == {"online_alpha0"}
    assert summary["online"]["4"]["baseline"]["max_abs_diff_vs_stored"] < 1e-3
