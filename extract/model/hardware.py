"""``--dtype auto``: the compute dtype this machine runs fast, decided by the hardware.

On a CPU, bfloat16 is fast only where the CPU computes it natively (AVX-512 with the BF16
extension, or AMX): there Qwen2.5-Coder-1.5B extracts about 2x faster than in float32. Elsewhere
torch emulates it, and the same run took 0.29x float32's speed on an AVX2-only EPYC
(docs/benchmarks.md). So ``auto`` asks torch what the CPU can do (:func:`cpu_info`) and picks
bfloat16 only where it is native; on CUDA, bfloat16 where the GPU supports it; float32 elsewhere.

Forcing ``--dtype bfloat16`` on a CPU without it is allowed but warned about, with the slowdown
measured by a short matmul probe (:func:`probe_bf16_speed`, cached per machine).
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class CpuInfo:
    """What torch reports about the CPU. ``capability``: torch's dispatch level ("AVX512",
    "AVX2", "DEFAULT", ...; lowered by ``ATEN_CPU_CAPABILITY``); ``avx512_bf16``/``amx``: the
    CPU's bf16 instructions."""

    model: str
    capability: str
    avx512_bf16: bool
    amx: bool

    @property
    def bf16_native(self) -> bool:
        """bf16 matmuls run on bf16 instructions (not emulated through float32)."""
        return self.capability.startswith("AVX512") and (self.avx512_bf16 or self.amx)

    def describe(self) -> str:
        flags = [f for f, on in (("avx512_bf16", self.avx512_bf16), ("amx_bf16", self.amx)) if on]
        return f"{self.model} (torch CPU capability {self.capability}; bf16 instructions: " + (
            ", ".join(flags) + ")" if flags else "none)"
        )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_info() -> CpuInfo:
    """The CPU as torch sees it (tests replace this function to play another CPU)."""
    cpu = torch.cpu
    flag = lambda name: bool(getattr(cpu, name, lambda: False)())  # noqa: E731
    return CpuInfo(
        model=_cpu_model(),
        capability=str(torch.backends.cpu.get_cpu_capability()),
        avx512_bf16=flag("_is_avx512_bf16_supported"),
        amx=flag("_is_amx_tile_supported"),
    )


@dataclass(frozen=True)
class DtypeChoice:
    """The dtype a run computes in, and why (printed by extract, kept in the run record)."""

    requested: str  # --dtype as given
    dtype: str  # "bfloat16" | "float16" | "float32"
    reason: str
    cpu: dict[str, Any] | None = None  # CpuInfo of a CPU run
    warning: str | None = None  # bf16 forced where it is slow

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def record(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def choose_dtype(
    requested: str, device: str, info: CpuInfo | None = None, cache: Path | None = None
) -> DtypeChoice:
    """Resolve ``--dtype`` for ``device`` ("cpu", "cuda", "mps", or a device map's first).
    ``cache``: the folder where the bf16 probe's figure is kept (None: measured every time)."""
    cpu = None
    if device == "cpu":
        info = info if info is not None else cpu_info()
        cpu = asdict(info)
    if requested != "auto":
        warning = None
        if requested == "bfloat16" and info is not None and not info.bf16_native:
            speed = probe_bf16_speed(info, cache)
            warning = (
                f"warning: --dtype bfloat16 on a CPU without native bf16 ({info.describe()}): "
                f"a matmul probe ran bfloat16 at {speed:.2f}x float32's speed here. "
                "--dtype auto would choose float32."
            )
        return DtypeChoice(requested, requested, "asked for (--dtype)", cpu, warning)
    if device == "cuda":
        if torch.cuda.is_bf16_supported():
            return DtypeChoice(requested, "bfloat16", "the CUDA device supports bfloat16")
        return DtypeChoice(requested, "float32", "the CUDA device has no bfloat16")
    if info is None:
        return DtypeChoice(requested, "float32", f"{device}: float32 (no bf16 check there)")
    if info.bf16_native:
        why = f"native bf16 on {info.describe()}: about 2x float32's speed"
        return DtypeChoice(requested, "bfloat16", why, cpu)
    why = f"no native bf16 on {info.describe()}: bfloat16 would be emulated, slower than float32"
    return DtypeChoice(requested, "float32", why, cpu)


def probe_bf16_speed(
    info: CpuInfo, cache: Path | None, *, size: int = 768, repeats: int = 3
) -> float:
    """bfloat16 matmul throughput over float32's on this CPU (1.0: the same), measured once per
    machine (CPU model, capability, torch version) and kept in ``cache/dtype-probe.json``."""
    key = f"{info.model}|{info.capability}|{torch.__version__}"
    path = cache / "dtype-probe.json" if cache is not None else None
    try:
        cached = json.loads(path.read_text()) if path is not None else {}
    except (OSError, ValueError):
        cached = {}
    if key in cached:
        return float(cached[key])
    seconds = {}
    for name in ("float32", "bfloat16"):
        a = torch.randn(size, size, dtype=DTYPES[name])
        torch.mm(a, a)  # warm-up
        t0 = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, a)
        seconds[name] = time.perf_counter() - t0
    ratio = seconds["float32"] / max(seconds["bfloat16"], 1e-9)
    if path is not None:
        cached[key] = round(ratio, 3)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cached, indent=1))
            tmp.replace(path)
        except OSError:
            pass  # an unwritable cache only costs the probe next time
    return ratio
