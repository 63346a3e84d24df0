"""``python -m bench.dtype`` as a smoke run on a tiny model: both dtypes extracted, compared, reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests import REPO


def test_smoke_run_on_tiny_model(tiny_llama_dir, data_dir):
    cmd = [sys.executable, "-m", "bench.dtype", "--model", str(tiny_llama_dir), "--n", "6"]
    cmd += ["--batch-size", "4", "--data-dir", str(data_dir)]
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2"}  # an AVX2-only CPU, as torch sees it
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result["prompts_per_s"]) == {"float32", "bfloat16"}
    assert len(result["per_layer"]) == 5  # the tiny Llama: embedding + 4 blocks
    assert 0 <= result["max_abs_delta_ece"] <= 1 and result["bf16_speedup"] > 0
    assert all(r["accuracy_float32"] is not None for r in result["per_layer"])
    # the machine the figures belong to, printed and in the JSON, emulation included
    host = result["machine"]
    assert host["torch_capability"] == "AVX2" and not host["bf16_native"]
    assert host["auto_dtype"] == "float32" and host["emulation"] == {"ATEN_CPU_CAPABILITY": "avx2"}
    assert host["cpu"] and host["cores"] >= 1 and len(host["load_average_end"]) == 3
    assert (
        "torch CPU capability AVX2" in proc.stdout
        and "emulating: ATEN_CPU_CAPABILITY" in proc.stdout
    )
