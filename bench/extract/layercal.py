"""``layercal``: :func:`extract.run.extract` end to end into a fresh store; with ``--shots``,
also without prefix reuse (``layercal-full``) and zero-shot (``layercal-zeroshot``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench.extract.inputs import Inputs, extract_config, load, padded_tokens, reset_peaks


def run_layercal(args: argparse.Namespace, work: Path, variant: str = "layercal") -> dict[str, Any]:
    import torch

    from extract.forward.capture import run_batch
    from extract.forward.tokens import pad_batch
    from extract.model.arch import resolve
    from extract.run import extract
    from layercal.format import ACTIVATION_ARRAYS

    lm = load(args)
    inp = Inputs(args, lm.tokenizer, lm.device, variant)
    short = sorted(range(len(inp.seqs)), key=lambda i: inp.lengths[i])[:4]
    ids, mask = pad_batch(lm.tokenizer, [inp.seqs[i] for i in short], lm.device, "left")
    run_batch(lm.model, resolve(lm.model), ids, mask, inp.ans_ids)  # warm-up, as for the others
    store = work / "store.zarr"
    reset_peaks(lm.device)
    t0, c0 = time.perf_counter(), time.process_time()
    summary = extract(extract_config(args, str(store), variant), loaded=lm)
    if lm.device.type == "cuda":
        torch.cuda.synchronize()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    per_ex = sum(
        f.stat().st_size
        for name in ACTIVATION_ARRAYS
        for f in (store / name).rglob("*")
        if f.is_file()
    )
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        **inp.counts(),
        "padded_tokens": padded_tokens(inp.lengths, inp.planned),
        "max_batch_tokens": inp.max_batch_tokens,
        "store": str(store),
        "activation_bytes": per_ex,
        "self_check_max_abs_diff": summary.self_check_max_abs_diff,
    }
