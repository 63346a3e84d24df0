"""bfloat16 stores end to end, through the ``layercal`` command: a tiny random model and the real
SmolLM2, each extracted with ``--dtype bfloat16``, then ``summary``, ``store verify``,
``analyze``, ``nullspace``, ``direction fit`` and ``steer`` (offline; online on the tiny model).

Every lens check of a store uses the tolerance of the dtype it records
(:func:`layercal.lens.self_check_tolerance`), so a bf16 store passes each command; the numbers
each writes are finite and in their ranges."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from layercal import cli
from layercal.lens import self_check_tolerance

SUBJECTS = "formal_logic,astronomy"


def _extract(model: str, out, data_dir, limit: int) -> None:
    argv = ["extract", "--model", model, "--dataset", "mmlu", "--subjects", SUBJECTS]
    argv += ["--limit", str(limit), "--data-dir", str(data_dir), "--out", str(out)]
    argv += ["--dtype", "bfloat16", "--device", "cpu", "--batch-size", "8", "--no-progress"]
    assert cli.main(argv) == 0


def _layercal(capsys, *argv: str) -> str:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, f"layercal {' '.join(argv[:2])}: {err[-2000:]}"
    return out


def _in(x: float, lo: float, hi: float) -> bool:
    return math.isfinite(x) and lo - 1e-9 <= x <= hi + 1e-9


def _check_all_commands(store, report, capsys, online: list[str] | None = None) -> None:
    """Run the six commands on a bf16 store and check what each writes."""
    import xarray as xr

    ds = xr.open_zarr(store)
    assert ds.attrs["layercal"]["identity"]["dtype"] == "bfloat16"
    n_depth = int(ds.sizes["layer"])

    out = _layercal(capsys, "summary", str(store))
    rows = [ln.split() for ln in out.splitlines() if ln.strip()[:1].isdigit()]
    assert len(rows) == n_depth
    for _, acc, ece, conf in rows:
        assert _in(float(acc), 0, 1) and _in(float(ece), 0, 1) and _in(float(conf), 0.25, 1)
    diff = float(out.splitlines()[-1].rsplit("=", 1)[1])
    model_logits = np.asarray(ds["model_logits"].values)
    assert 0 <= diff <= self_check_tolerance("bfloat16", model_logits)
    assert diff > self_check_tolerance("float32", model_logits)  # bf16 rounding: above fp32's bound

    out = _layercal(capsys, "store", "verify", str(store))
    assert out.splitlines()[0].endswith(": OK") and "self-check" in out

    nulls, dirs, steer = report / "nullspace", report / "direction", report / "steer"
    _layercal(capsys, "nullspace", str(store), "--out", str(nulls), "--fractions", "0.01,0.05",
              "--random", "1", "--n-boot", "20", "--vocab-examples", "4")  # fmt: skip
    ab = pl.read_csv(nulls / "ablation.csv")
    assert ab.height > 0 and ab["n"].min() == ds.sizes["example"]
    for col in ("ece", "accuracy", "d_ece", "removed", "norm_ratio"):
        assert np.isfinite(ab[col].to_numpy()).all(), col
    assert ab["accuracy"].is_between(0, 1).all() and ab["ece"].is_between(0, 1).all()
    assert (ab.filter(pl.col("kind") == "null")["removed"] > 0).all()  # k >= 1 removes something

    _layercal(capsys, "direction", "fit", str(store), "-o", str(dirs), "--estimator", "pca",
              "--n-boot", "4")  # fmt: skip
    info = json.loads((dirs / "direction.json").read_text())
    ev = info["diagnostics"]["explained_variance"]
    assert ev and all(_in(x, 0, 1) for x in ev) and sum(ev) <= 1 + 1e-9
    assert info["diagnostics"]["null_space_share"]["share"] <= 1

    base = ["steer", str(store), "--direction", str(dirs)]
    common = ["--alphas=-0.5,0,0.5", "--random", "1", "--n-boot", "50"]
    _layercal(capsys, *base, "--out", str(steer), *common)
    tab = pl.read_csv(steer / "steering.csv")
    assert tab["method"][0] == "none" and "direction" in tab["method"].to_list()
    for col in ("accuracy", "ece", "brier", "nll", "d_ece"):
        assert np.isfinite(tab[col].to_numpy()).all(), col
    # MCE counts bins of >= 10 examples: nan on a test split too small to fill one
    mce = tab["mce"].to_numpy()
    assert (np.isnan(mce) | ((mce >= 0) & (mce <= 1))).all()
    assert tab["accuracy"].is_between(0, 1).all() and tab["ece"].is_between(0, 1).all()
    if online:
        on = report / "steer-online"
        _layercal(capsys, *base, "--out", str(on), *common, *online)
        meta = json.loads((on / "meta.json").read_text())
        assert meta["mode"] == "online" and meta["online"]["dtype"] == "bfloat16"
        base = meta["baseline"]  # the online α = 0 run, within bf16's bound of the stored lens
        assert base["kind"] == "online_alpha0" and base["store_dtype"] == "bfloat16"
        assert 0 <= base["max_abs_diff_vs_stored"] <= base["tolerance"]
        assert base["tolerance"] > 0.05  # 0.05 + 2% of the largest |logit|
        tab = pl.read_csv(on / "steering.csv")
        assert np.isfinite(tab["ece"].to_numpy()).all()
        assert (tab["baseline"] == "online_alpha0").all()
        assert "the online α = 0 run" in (on / "section.md").read_text()

    out = _layercal(capsys, "analyze", str(store), "--out", str(report), "--n-boot", "50",
                    "--vocab-examples", "4")  # fmt: skip
    layers = pl.read_csv(report / "layers.csv")
    assert layers.height == n_depth
    for col in ("accuracy", "ece", "mce", "mean_confidence"):
        assert layers[col].is_between(0, 1).all(), col
    md = (report / "report.md").read_text()
    assert "Calibration direction" in md and "Null space" in md and "Steering" in md


def test_bf16_tiny_model_every_command(tmp_path, tiny_llama_dir, data_dir, capsys):
    store = tmp_path / "tiny-bf16.zarr"
    _extract(str(tiny_llama_dir), store, data_dir, limit=32)
    capsys.readouterr()
    online = ["--online", "--model", str(tiny_llama_dir), "--dtype", "bfloat16", "--layer", "2"]
    online += ["--limit", "4", "--device", "cpu"]
    _check_all_commands(store, tmp_path / "report", capsys, online=online)


@pytest.mark.slow
def test_bf16_smollm2_every_command(tmp_path, data_dir, capsys):
    store = tmp_path / "smol-bf16.zarr"
    _extract("smollm2-135m", store, data_dir, limit=32)
    capsys.readouterr()
    _check_all_commands(store, tmp_path / "report", capsys)
