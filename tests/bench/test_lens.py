"""``python -m bench.lens`` (issue 18, item 5) as a smoke run on a small synthetic store: it
builds a real store, fits every kind in a child process each, and its last line is one JSON
object with the time and peak RSS of each. Never a check of how fast anything is."""

from __future__ import annotations

import json
import subprocess
import sys

from tests import REPO


def test_smoke_run_prints_each_kind(tmp_path):
    store = tmp_path / "bench.zarr"
    cmd = [sys.executable, "-m", "bench.lens", "--store", str(store), "--n", "120", "--folds", "3"]
    cmd += ["--depths", "4", "--hidden", "24", "--vocab", "2374", "--tuned-max-iter", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    last = json.loads(out.strip().splitlines()[-1])
    assert (last["n_examples"], last["n_depth"], last["hidden"], last["vocab"]) == (
        120,
        4,
        24,
        2374,
    )
    assert set(last["kinds"]) == {"temperature", "shortcut", "tuned"}
    for kind, rec in last["kinds"].items():
        assert rec["fit_s"] > 0 and rec["peak_rss_mb"] > 0, kind
        assert rec["rss_vs_resid"] > 0 and rec["cpu_s"] > 0, kind
    assert last["kinds"]["tuned"]["iterations"] > 0 and "peak RSS" in out and store.is_dir()
