"""bench/extract/compare.py: medians, ratios, the report lines, the options a child gets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench.extract import compare as bench


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


def test_a_child_gets_the_run_options_and_no_cap_as_zero():
    args = argparse.Namespace(
        n=6,
        model="m",
        batch_size=4,
        data_dir="d",
        dataset="mmlu",
        split="test",
        seed=0,
        dtype="auto",
        threads=None,
        max_batch_tokens=None,
        shots=0,
        subjects=["a", "b"],
        device="cpu",
    )
    argv = bench.child_argv(args, "bare", Path("w"))
    assert argv[:4] == ["--child", "bare", "--workdir", "w"]
    assert argv[argv.index("--max-batch-tokens") + 1] == "0"  # None: no cap, not "auto"
    assert argv[argv.index("--subjects") + 1] == "a,b" and argv[-2:] == ["--device", "cpu"]
    assert "--threads" not in argv  # None: left out, the child keeps torch's choice
