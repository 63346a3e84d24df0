"""``python -m bench.explore`` as a smoke run on a small synthetic store: it builds a real store, runs the
three commands, and its last line is one JSON object. Never a check of how fast anything is."""

from __future__ import annotations

import json
import subprocess
import sys

from tests import REPO


def test_smoke_run_prints_the_json_line(data_dir):
    cmd = [sys.executable, "-m", "bench.explore", "--n", "150", "--vocab", "1024"]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=900, check=True, cwd=REPO
    ).stdout
    last = json.loads(out.strip().splitlines()[-1])
    assert last["n"] == 150 and last["depths"] == 29 and last["hidden"] == 1536
    assert last["analyze_s"] > 0 and last["explore_cached_s"] > 0 and last["page_mb"] > 0.5
    ratio = last["explore_cached_s"] / last["analyze_s"]
    assert abs(last["explore_cached_vs_analyze"] - ratio) <= 1e-9 * ratio
