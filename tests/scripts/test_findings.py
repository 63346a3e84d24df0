"""scripts/findings.py and scripts/compare_findings.py end to end on planted stores: every step
runs, the few-shot comparison matches examples by id, and the side-by-side tables carry the
runs' numbers."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import xarray as xr

from analyze.calibration import selection_half
from analyze.report.numbers import num, with_ci
from tests.analyze.interventions.planted import planted_store

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import compare_findings  # noqa: E402
import findings  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("findings")
    mmlu = planted_store(tmp / "mmlu.zarr", n=320)
    tqa = planted_store(tmp / "tqa.zarr", n=160, seed=3)  # same W_U: the same "model"
    # a "few-shot" store: the same question ids as mmlu, other residuals
    few = planted_store(tmp / "few.zarr", n=320, seed=5)
    out = {}
    for name, fewshot in (("a", None), ("b", few)):
        if fewshot is not None:  # run b: a's outputs, then only the few-shot step added
            shutil.copytree(tmp / "a", tmp / name)
        argv = [
            "--mmlu",
            str(mmlu),
            "--truthfulqa",
            str(tqa),
            "--out",
            str(tmp / name),
            "--n-boot",
            "50",
            "--label",
            f"model {name}",
        ]
        if fewshot is not None:
            argv += ["--fewshot", str(fewshot), "--only", "fewshot"]
        assert findings.main(argv) == 0
        out[name] = tmp / name
    return tmp, out, mmlu


def test_findings_writes_every_step(runs):
    _, out, _ = runs
    found = json.loads((out["a"] / "findings.json").read_text())
    assert found["label"] == "model a"
    assert all(v["rc"] == 0 for v in found["steps"].values())
    assert set(found["direction"]) == set(findings.ESTIMATORS)
    assert set(found["steer"]) == set(findings.ESTIMATORS)
    layers = pl.read_csv(out["a"] / "analysis" / "mmlu" / "layers.csv")
    s = found["layers"]["mmlu"]
    assert s["accuracy_last"] == pytest.approx(layers["accuracy"][-1], abs=0)
    assert s["ece_last"] == pytest.approx(layers["ece"][-1], abs=0)
    marks = json.loads((out["a"] / "analysis" / "mmlu" / "landmarks.json").read_text())
    assert s["landmarks"] == {k: marks.get(k) for k in findings.LANDMARK_KEYS}
    assert s["landmarks"]["chance_accuracy"] == 0.25  # 4 options each: the figure's chance line
    assert found["online"] == {} and found["fewshot"] is None


def test_fewshot_compares_the_same_examples(runs):
    tmp, out, mmlu = runs
    few = json.loads((out["b"] / "fewshot" / "summary.json").read_text())
    assert few["n"] == 320
    # the zero-shot side is the mmlu store's analysis of the same examples: all of them here
    full = json.loads((out["b"] / "findings.json").read_text())["layers"]["mmlu"]
    assert few["zero-shot"]["accuracy_last"] == pytest.approx(full["accuracy_last"], abs=1e-12)
    assert few["zero-shot"]["ece_last"] == pytest.approx(full["ece_last"], abs=1e-12)
    other = pl.read_csv(out["b"] / "fewshot" / "few-shot" / "layers.csv")
    assert few["few-shot"]["accuracy_last"] == pytest.approx(other["accuracy"][-1], abs=0)


def test_fewshot_refuses_examples_the_zero_shot_store_lacks(runs, tmp_path):
    tmp, _, mmlu = runs
    other = planted_store(tmp_path / "other.zarr", n=400)  # ids beyond the 320 of mmlu
    with pytest.raises(SystemExit, match="not in"):
        findings.fewshot_compare(str(mmlu), str(other), tmp_path / "x", 10)


def test_fewshot_refuses_another_models_store(runs, tmp_path):
    tmp, _, mmlu = runs
    other = planted_store(tmp_path / "other.zarr", n=320, seed=5, w_seed=1)  # the same ids
    before = sorted(p.name for p in mmlu.iterdir())
    with pytest.raises(SystemExit, match="another model"):
        findings.fewshot_compare(str(mmlu), str(other), tmp_path / "x", 10)
    assert not (tmp_path / "x").exists() and sorted(p.name for p in mmlu.iterdir()) == before


def test_online_layers_inside_the_correction_phase():
    cp = {"start": 24, "end": 28}
    layers = {"mmlu": {"landmarks": {"correction_phase": cp}}}
    assert findings.online_layers("auto", layers) == [24, 26]
    assert findings.online_layers("auto", {"mmlu": {"landmarks": {}}}) == []
    assert findings.online_layers("20,22", layers) == [20, 22]


def test_bad_online_layers_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        findings.main(["--mmlu", "x.zarr", "--out", str(tmp_path), "--online-layers", "a,24"])
    assert "'auto' or depths like 20,24" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written


def test_compare_tables_and_figure(runs, tmp_path):
    _, out, _ = runs
    figs = tmp_path / "figs"
    rc = compare_findings.main(
        [str(out["a"]), str(out["b"]), "--out", str(tmp_path / "cmp"), "--figures", str(figs)]
    )
    assert rc == 0
    models = json.loads((tmp_path / "cmp" / "side_by_side.json").read_text())
    assert [m["label"] for m in models] == ["model a", "model b"]
    found = json.loads((out["a"] / "findings.json").read_text())
    pca = found["steer"]["pca"]["test"]
    row = next(r for r in pca if r["method"] == "direction")
    assert models[0]["steer"]["pca"]["direction"]["d_ece"] == row["d_ece"]
    md = (tmp_path / "cmp" / "side_by_side.md").read_text()
    assert num(row["d_ece"], 3, signed=True) in md and "Few-shot against zero-shot" in md
    fixed = json.loads((out["b"] / "fewshot" / "summary.json").read_text())["fixed_window"]
    few_row = next(x for x in md.splitlines() if x.startswith("| model b | 320 | few-shot |"))
    w, d = fixed["window"], fixed["few-shot"]
    assert few_row.endswith(f"| ({w[0]}, {w[1]}] | {with_ci(d, 'delta_ece', signed=True)} |")
    layers = pl.read_csv(tmp_path / "cmp" / "layers.csv")
    assert set(layers["dataset"]) == {"mmlu", "truthfulqa"}
    assert layers["relative_depth"].max() == 1.0
    assert compare_findings.analysed_stores(found) == [("mmlu", "mmlu"), ("truthfulqa", "tqa")]
    assert (figs / "models_over_depth.png").stat().st_size > 10_000
    assert (figs / "model-a-metrics_over_depth.png").is_file()


def _ece(conf, correct, bins=10):
    """Equal-width ECE written out: sum over bins of |mean confidence - accuracy| weighted."""
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    return sum(
        abs(conf[idx == b].mean() - correct[idx == b].mean()) * (idx == b).mean()
        for b in range(bins)
        if (idx == b).any()
    )


def test_fewshot_measures_the_zero_shot_window_on_both_stores(runs):
    tmp, out, _ = runs
    few = json.loads((out["b"] / "fewshot" / "summary.json").read_text())
    phase = few["zero-shot"]["landmarks"]["correction_phase"]
    assert phase, "the planted store has a correction phase"
    fw = few["fixed_window"]
    assert fw["window"] == [phase["start"], phase["end"]]
    # on the zero-shot store the fixed window is its own correction phase, number for number
    for k in ("n_test", "ece_start", "ece_end", "delta_ece", "delta_ece_lo", "delta_ece_hi"):
        assert fw["zero-shot"][k] == pytest.approx(phase[k], abs=1e-12), k
    assert fw["zero-shot"]["delta_confidence"] == pytest.approx(
        phase["delta_confidence"], abs=1e-12
    )
    # on the few-shot store, the same depths and the same test half, by the formula written out
    # from the recorded lens logits
    ds = xr.open_zarr(tmp / "few.zarr")
    test = ~selection_half(ds["subject"].values, ds["example_id"].values, 0)
    lay = [int(x) for x in ds["layer"].values]
    for depth, key in zip(fw["window"], ("start", "end"), strict=True):
        z = ds["lens_logits"].values[test, lay.index(depth)].astype(np.float64)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        conf, correct = p.max(axis=1), p.argmax(axis=1) == ds["label"].values[test]
        assert fw["few-shot"][f"ece_{key}"] == pytest.approx(_ece(conf, correct), abs=1e-5)
        assert fw["few-shot"][f"confidence_{key}"] == pytest.approx(conf.mean(), abs=1e-5)
        assert fw["few-shot"][f"accuracy_{key}"] == pytest.approx(correct.mean(), abs=1e-12)
    d = fw["few-shot"]
    assert d["delta_ece"] == pytest.approx(d["ece_end"] - d["ece_start"], abs=1e-12)
    assert d["delta_ece_lo"] <= d["delta_ece"] <= d["delta_ece_hi"]
