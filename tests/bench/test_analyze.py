"""``python -m bench.analyze`` (issue 3) as a smoke run on a small synthetic store: it builds a real store,
runs, and its last line is the JSON the issue names. Never a check of how fast anything is."""

from __future__ import annotations

import json
import subprocess
import sys

from tests import REPO


def test_smoke_run_prints_the_json_line(tmp_path):
    store = tmp_path / "bench.zarr"
    cmd = [sys.executable, "-m", "bench.analyze", "--store", str(store), "--n", "300"]
    cmd += ["--repeats", "2", "--n-boot", "20"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True, cwd=REPO)
    out = run.stdout
    last = json.loads(out.strip().splitlines()[-1])
    assert last["n_examples"] == 300 and last["n_layers"] == 31 and last["repeats"] == 2
    assert last["analysis_s"] > 0 and last["read_s"] > 0
    ratio = last["analysis_s"] / last["read_s"]  # of the unrounded times, rounded
    assert abs(last["analysis_vs_read"] - ratio) <= 0.01 * ratio
    assert len(last["analysis_vs_read_pairs"]) == 2 and last["analysis_vs_read_median"] > 0
    # the store records lens_entropy, so the vocabulary sample is the small cross-check, and the
    # recomputed lens agrees with what the builder recorded
    assert last["vocab_examples"] == 8 and last["checks_ok"] is True
    assert "ratio:" in out and "peak RSS" in out and store.is_dir()
    # the machine it was measured on, printed and in the JSON (figures are compared per machine)
    assert "machine: " in out and last["machine"]["cores"] >= 1 and last["machine"]["cpu"]
