"""What the benchmarks share: timing, peak memory, one measurement per child process, and the
JSON object each run prints as its last line.

A child process is ``python -m bench.NAME ... --child ...`` run from the repository root; it
prints one line ``TAG{json}`` that :func:`spawn` reads back, so each variant's peak RSS is its
own. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
# SmolLM2-135M on all of MMLU's test set: examples, depths (embedding + 30 blocks), hidden size,
# vocabulary; the full-scale synthetic stores of bench.analyze and bench.steer have this shape
MMLU_N, SMOLLM2_DEPTHS, SMOLLM2_HIDDEN, SMOLLM2_VOCAB = 14042, 31, 576, 49152

T = TypeVar("T")


def data_dir(given: str | None = None) -> str:
    """The benchmark data folder: ``given``, else $LAYERCAL_DATA_DIR, else ../shared/data."""
    return given or os.environ.get("LAYERCAL_DATA_DIR") or str(REPO.parent / "shared" / "data")


def cpu_seconds() -> float:
    """CPU seconds of this process so far (user + system, all threads)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def timed(fn: Callable[[], T]) -> tuple[T, float, float]:
    """(result, wall seconds, CPU seconds) of ``fn()``."""
    w, c = time.perf_counter(), cpu_seconds()
    out = fn()
    return out, time.perf_counter() - w, cpu_seconds() - c


def peak_rss() -> int:
    """Peak resident set size in bytes since the last :func:`reset_peak_rss` (Linux VmHWM; else
    the process' maximum)."""
    try:
        text = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", text).group(1)) * 1024  # type: ignore[union-attr]
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> None:
    """Start :func:`peak_rss` afresh (Linux: writing 5 to clear_refs resets VmHWM), so that, say,
    loading a model is not in the peak of what is measured after it."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def report(result: dict[str, Any]) -> None:
    """Print the run's JSON object: the last line of every benchmark's output."""
    print(json.dumps(result), flush=True)


def child_report(tag: str, result: dict[str, Any]) -> None:
    """A child's result, on the one line :func:`spawn` looks for."""
    print(tag + json.dumps(result), flush=True)


def spawn(module: str, argv: Sequence[str], tag: str) -> tuple[dict[str, Any] | None, Any]:
    """Run ``python -m module *argv`` from the repository root; (its ``tag`` line's JSON, or
    None when it failed or printed none, and the finished process)."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ),
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(tag)]
    if proc.returncode != 0 or not lines:
        return None, proc
    return json.loads(lines[-1].removeprefix(tag)), proc
