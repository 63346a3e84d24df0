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


# settings that make torch behave as on another CPU (an AVX2-only one, say): recorded with the
# machine so that an emulated figure is never read as a native one
EMULATION_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def machine() -> dict[str, Any]:
    """The machine a figure was measured on: CPU model and core count, torch's CPU capability
    and bf16 instructions (``extract.model.hardware``: imports torch), what ``--dtype auto``
    picks there, the load average, and any emulation settings in the environment."""
    from extract.model.hardware import choose_dtype, cpu_info

    info = cpu_info()
    return {
        "cpu": info.model,
        "cores": os.cpu_count(),
        "torch_capability": info.capability,
        "avx512_bf16": info.avx512_bf16,
        "amx": info.amx,
        "bf16_native": info.bf16_native,
        "auto_dtype": choose_dtype("auto", "cpu", info).dtype,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "emulation": {k: os.environ[k] for k in EMULATION_ENV if k in os.environ},
    }


def describe_machine(m: dict[str, Any]) -> str:
    """One line of :func:`machine` for a benchmark's printed output."""
    emulated = ", ".join(f"{k}={v}" for k, v in m["emulation"].items())
    return (
        f"machine: {m['cpu']}, {m['cores']} cores, torch CPU capability {m['torch_capability']}"
        f" (bf16 native: {'yes' if m['bf16_native'] else 'no'}; --dtype auto -> {m['auto_dtype']})"
        f", load average {m['load_average'][0]}" + (f"; emulating: {emulated}" if emulated else "")
    )


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
