"""``python -m bench.steer`` as a smoke run of its online part on a tiny model (the offline part
builds a full-size store: a benchmark, not a test). Never a check of how fast anything is."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests import REPO


def test_online_smoke_run_on_tiny_model(tiny_llama_dir, data_dir):
    cmd = [sys.executable, "-m", "bench.steer", "--model", str(tiny_llama_dir), "--prompts", "4"]
    cmd += ["--batch-size", "2", "--skip-offline", "--threads", "1"]
    env = {**os.environ, "LAYERCAL_DATA_DIR": str(data_dir)}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["online_prompts"] == 4 and out["torch_threads"] == 1
    assert out["full_forward_s"] > 0 and out["extra_alpha_s"] > 0
    ratio = out["extra_alpha_s"] / out["full_forward_s"]
    assert abs(out["extra_alpha_vs_full_forward"] - ratio) <= 1e-12 * ratio
    assert "one extra α" in p.stdout
