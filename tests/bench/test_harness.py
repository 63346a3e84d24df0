"""bench/harness.py: timing, peak memory, child processes and their result lines."""

from __future__ import annotations

import json
import time

import numpy as np

from bench import harness


def test_timed_returns_the_result_and_wall_and_cpu_seconds():
    def work() -> float:
        t0 = time.process_time()
        while time.process_time() - t0 < 0.05:  # 50 ms of CPU
            pass
        return 7.0

    out, wall, cpu = harness.timed(work)
    assert out == 7.0 and wall >= 0.05 and 0.04 <= cpu <= wall + 0.05


def test_peak_rss_sees_an_allocation_and_starts_afresh_after_a_reset():
    harness.reset_peak_rss()
    before = harness.peak_rss()
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    assert harness.peak_rss() >= before + 60 * 2**20
    del block
    harness.reset_peak_rss()
    assert harness.peak_rss() < before + 60 * 2**20


def test_a_child_result_line_is_read_back_and_a_failed_child_is_none(capsys):
    harness.child_report("TAG ", {"a": 1})
    assert capsys.readouterr().out == "TAG " + json.dumps({"a": 1}) + "\n"
    res, proc = harness.spawn("bench.extract", ["--no-such-option"], "BENCH_RESULT ")
    assert res is None and proc.returncode == 2 and "--no-such-option" in proc.stderr


def test_the_data_folder_is_the_given_one_else_the_environment_s(monkeypatch):
    monkeypatch.setenv("LAYERCAL_DATA_DIR", "/data/here")
    assert harness.data_dir("given") == "given" and harness.data_dir() == "/data/here"
    monkeypatch.delenv("LAYERCAL_DATA_DIR")
    assert harness.data_dir() == str(harness.REPO.parent / "shared" / "data")
