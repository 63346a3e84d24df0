"""The variants by name, and the child side: one variant, one repeat, in its own process."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.extract.bare import run_bare, run_naive
from bench.extract.layercal import run_layercal
from bench.extract.peers import run_nnsight, run_transformerlens
from bench.harness import peak_rss

VARIANTS = (
    "bare",
    "bare-sorted",
    "bare-unsorted",
    "layercal",
    "naive",
    "transformerlens",
    "transformerlens-sorted",
    "nnsight",
    "nnsight-sorted",
    "layercal-full",
    "layercal-zeroshot",
)
SHOT_VARIANTS = ("layercal", "layercal-full", "layercal-zeroshot")  # the --shots comparison
DEFAULT_VARIANTS = tuple(v for v in VARIANTS if v not in ("bare-unsorted", *SHOT_VARIANTS[1:]))
PEERS = {v: v.split("-")[0] for v in VARIANTS if v.startswith(("transformerlens", "nnsight"))}
LABELS = {"transformerlens": "TransformerLens", "nnsight": "nnsight"}
RESULT_TAG = "BENCH_RESULT "


RUNNERS: dict[str, Callable[[argparse.Namespace, Path], dict[str, Any]]] = {
    "bare": lambda a, w: run_bare(a, w, "planned"),
    "bare-sorted": lambda a, w: run_bare(a, w, "sorted"),
    "bare-unsorted": lambda a, w: run_bare(a, w, "unsorted"),
    "layercal": run_layercal,
    "layercal-full": lambda a, w: run_layercal(a, w, "layercal-full"),
    "layercal-zeroshot": lambda a, w: run_layercal(a, w, "layercal-zeroshot"),
    "naive": run_naive,
    "transformerlens": lambda a, w: run_transformerlens(a, w, sort=False),
    "transformerlens-sorted": lambda a, w: run_transformerlens(a, w, sort=True),
    "nnsight": lambda a, w: run_nnsight(a, w, sort=False),
    "nnsight-sorted": lambda a, w: run_nnsight(a, w, sort=True),
}


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_child(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    if args.child in PEERS:
        module = {"transformerlens": "transformer_lens", "nnsight": "nnsight"}[PEERS[args.child]]
        try:
            __import__(module)
        except ImportError as e:
            return {"skipped": f"cannot import {module} ({e}); pip install {module}"}
    res = RUNNERS[args.child](args, work)
    res["peak_rss"] = peak_rss()
    res["device"] = f"CPU ({os.cpu_count()} cores)"
    res["threads"] = torch.get_num_threads()
    if torch.cuda.is_available() and args.device in ("auto", "cuda"):
        res["peak_device_bytes"] = torch.cuda.max_memory_allocated()
        res["device"] = torch.cuda.get_device_name()
    res["disk_bytes"] = disk_bytes(work)
    return res
