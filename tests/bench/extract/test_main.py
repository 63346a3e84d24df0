"""``python -m bench.extract`` (issue 6) as a CI smoke run on a tiny model, and the benchmark not
shadowing the package it is named after.

The smoke run checks that the benchmark runs and reports, never how fast anything is."""

from __future__ import annotations

import json
import subprocess
import sys

from tests import REPO

BENCH = [sys.executable, "-m", "bench.extract"]


def test_smoke_run_on_tiny_model(tiny_llama_dir, data_dir):
    cmd = [
        *BENCH,
        "--model",
        str(tiny_llama_dir),
        "--n",
        "6",
        "--batch-size",
        "4",
        "--repeats",
        "1",
        "--variants",
        "bare,layercal,naive",
        "--data-dir",
        str(data_dir),
        "--device",
        "cpu",
        "--dtype",
        "float32",  # the residuals agree to 1e-4 in float32 (--dtype auto may pick bf16)
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    for key in ("layercal_vs_bare", "layercal_vs_naive", "peak_rss_vs_bare", "prompts_per_s"):
        assert isinstance(out[key], float) and out[key] > 0, key
    assert out["layercal_vs_best_peer"] is None and out["best_peer"] is None
    assert out["n"] == 6 and out["batch_size"] == 4
    per = out["variants"]
    assert set(per) == {"bare", "layercal", "naive"}
    assert per["bare"]["disk_bytes_per_example"] == 0
    # the layercal store holds W_U (vocab 49152 x hidden 128 fp32): far more than its activations
    assert (
        per["layercal"]["disk_bytes_per_example"]
        > per["layercal"]["activation_bytes_per_example"]
        > 0
    )
    # the naive loop saved fp32 residuals of 5 depths x 128 for each example, plus 4 logits
    assert per["naive"]["disk_bytes_per_example"] >= 5 * 128 * 4
    # same residuals as layercal's store (all depths but the post-norm last one)
    assert per["naive"]["max_abs_diff_vs_layercal"] < 1e-4
    # bare runs layercal's own (length-sorted) batches
    assert per["layercal"]["padded_tokens"] == per["bare"]["padded_tokens"]
    assert "layercal / bare" in p.stdout


def test_shots_smoke_run_reports_prefix_reuse(tiny_llama_dir, data_dir):
    cmd = [*BENCH, "--model", str(tiny_llama_dir), "--shots", "5"]
    cmd += ["--n", "3", "--repeats", "1", "--data-dir", str(data_dir), "--device", "cpu"]
    cmd += ["--dtype", "float32"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert set(out["variants"]) == {"layercal", "layercal-full", "layercal-zeroshot"}
    assert out["n"] == 6 and out["shots"] == 5  # 3 of each default subject
    assert out["subjects"] == ["world_religions", "formal_logic"]
    for key in ("prefix_reuse_vs_full", "peak_rss_reuse_vs_zeroshot"):
        assert isinstance(out[key], float) and out[key] > 0, key
    per = out["variants"]
    # the same residuals with and without reuse; zero-shot prompts are other prompts
    assert per["layercal-full"]["max_abs_diff_vs_layercal"] < 1e-4
    per_prompt = {v: per[v]["tokens_per_s"] / per[v]["prompts_per_s"] for v in per}
    assert per_prompt["layercal-zeroshot"] < per_prompt["layercal-full"] / 2
    assert "5-shot: prefix reuse" in p.stdout


def test_no_bench_module_edits_sys_path_and_the_packages_are_not_shadowed():
    """The benchmarks run as ``python -m bench.NAME`` from the repository root, so ``import
    extract`` inside ``bench.extract`` is the package, not the benchmark."""
    edits = [p for p in (REPO / "bench").rglob("*.py") if "sys.path" in p.read_text()]
    assert not edits, edits
    code = (
        "import bench.extract.layercal, extract, analyze; print(extract.__file__, analyze.__file__)"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert p.stdout.split() == [
        str(REPO / "extract" / "__init__.py"),
        str(REPO / "analyze" / "__init__.py"),
    ]
    help_ = subprocess.run(
        [sys.executable, "-m", "bench.extract", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert help_.returncode == 0 and "--variants" in help_.stdout
