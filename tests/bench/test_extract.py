"""bench/extract.py (issue 6) as a CI smoke run on a tiny model and its report, and the script not
shadowing the package it is named after.

The smoke run checks that the benchmark runs and reports, never how fast anything is."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
import torch

from tests import REPO

BENCH = REPO / "bench" / "extract.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_extract", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bench = _bench_module()


def test_smoke_run_on_tiny_model(tiny_llama_dir, data_dir):
    cmd = [
        sys.executable,
        str(BENCH),
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
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
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
    cmd = [sys.executable, str(BENCH), "--model", str(tiny_llama_dir), "--shots", "5"]
    cmd += ["--n", "3", "--repeats", "1", "--data-dir", str(data_dir), "--device", "cpu"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
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


def _run(seconds, rss, **kw):
    return {"seconds": seconds, "peak_rss": rss, "padded_tokens": 100, "disk_bytes": 0, **kw}


def test_report_names_skipped_peers_and_picks_best_peer():
    meta = {"n": 10, "tokens": 1000, "batch_size": 4, "model": "m", "device": "cpu", "repeats": 2}
    runs = {
        "bare": [_run(2.0, 100), _run(4.0, 100)],
        "layercal": [_run(3.0, 120), _run(3.0, 120)],
        "naive": [_run(9.0, 400), _run(9.0, 400)],
        "nnsight": [_run(6.0, 300), _run(6.0, 300)],
        "nnsight-sorted": [_run(4.0, 300), _run(4.0, 300)],
    }
    skipped = {"transformerlens": "cannot import transformer_lens (No module)"}
    s = bench.summarize(runs, skipped, {"naive": 1e-5}, meta)
    assert s["layercal_vs_bare"] == pytest.approx(1.0)  # medians: 3 s vs 3 s
    assert s["layercal_vs_naive"] == pytest.approx(3.0)
    assert s["best_peer"] == "nnsight-sorted"
    assert s["layercal_vs_best_peer"] == pytest.approx(4.0 / 3.0)
    assert s["peak_rss_vs_bare"] == pytest.approx(1.2)
    assert s["prompts_per_s"] == pytest.approx(10 / 3)
    lines = bench.report_lines(s)
    assert any(
        ln.startswith("skipped TransformerLens (transformerlens): cannot import") for ln in lines
    )
    assert json.loads(json.dumps(s))["skipped"] == skipped
    none = bench.summarize({"layercal": runs["layercal"]}, skipped, {}, meta)
    assert none["layercal_vs_best_peer"] is None and none["layercal_vs_bare"] is None


def test_sorted_batches_follow_extract_blocks():
    lengths = [3, 9, 1, 9, 5, 2, 7]
    # blocks of 4: [0..3] sorted longest first (ties by index), then [4..6]
    assert bench.sorted_batches(lengths, 2, 4) == [[1, 3], [0, 2], [6, 4], [5]]
    assert bench.unsorted_batches(7, 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert bench.padded_tokens(lengths, [[1, 3], [0, 2]]) == 2 * 9 + 2 * 3


def test_random_shapes_are_the_real_configs():
    import transformers as tf

    with torch.device("meta"):
        m1 = tf.AutoModelForCausalLM.from_config(
            tf.LlamaConfig(**bench.RANDOM_SHAPES["llama-3.2-1b"])
        )
        m8 = tf.AutoModelForCausalLM.from_config(
            tf.LlamaConfig(**bench.RANDOM_SHAPES["llama-3-8b"])
        )
    n1 = sum(p.numel() for p in m1.parameters())  # tied embeddings counted once
    n8 = sum(p.numel() for p in m8.parameters())
    assert n1 == 1_235_814_400 and n8 == 8_030_261_248


@pytest.mark.parametrize("script", ["extract", "analyze"])
def test_a_bench_script_named_like_a_package_does_not_shadow_it(script, tmp_path):
    """``python bench/extract.py`` puts bench/ first on sys.path, where ``import extract`` finds
    the script itself; the script drops its folder from sys.path before anything else."""
    path = REPO / "bench" / f"{script}.py"
    as_a_script = f"import sys; sys.path.insert(0, {str(path.parent)!r})\n"
    probe = f"import {script}; print({script}.__file__)"
    run = [sys.executable, "-c"]
    # the folder first on sys.path shadows the package...
    naive = subprocess.run(
        [*run, as_a_script + probe], capture_output=True, text=True, cwd=tmp_path
    )
    assert naive.stdout.strip() == str(path), naive.stderr
    # ...and the script's own first lines undo that
    code = as_a_script + f"import runpy; runpy.run_path({str(path)!r}, run_name='bench')\n" + probe
    p = subprocess.run([*run, code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == str(REPO / script / "__init__.py")
