"""The loops a researcher writes: ``bare`` (the decoder alone on extract's batches, the floor;
``-sorted``/``-unsorted`` on other batches) and ``naive`` (``output_hidden_states=True``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.extract.inputs import Inputs, load, timed_loop


def run_bare(args: argparse.Namespace, work: Path, batching: str) -> dict[str, Any]:
    import torch

    from extract.forward.capture import position_ids
    from extract.forward.tokens import pad_batch

    lm = load(args)
    inp = Inputs(args, lm.tokenizer, lm.device)
    decoder = lm.model.base_model  # the decoder stack without the LM head

    @torch.inference_mode()
    def step(idx: list[int]) -> tuple[Any, Any]:
        ids, mask = pad_batch(lm.tokenizer, [inp.seqs[i] for i in idx], lm.device, "left")
        decoder(
            input_ids=ids, attention_mask=mask, position_ids=position_ids(mask), use_cache=False
        )
        return None, None

    batches = {"planned": inp.planned, "sorted": inp.sorted, "unsorted": inp.unsorted}[batching]
    return timed_loop(args, inp, lm.device, batches, step, work)


def run_naive(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch

    lm = load(args)
    inp = Inputs(args, lm.tokenizer, lm.device)
    model, tok, dev = lm.model, lm.tokenizer, lm.device

    def step(idx: list[int]) -> tuple[Any, Any]:
        enc = tok(
            [inp.prompts[i] for i in idx], return_tensors="pt", padding=True, padding_side="right"
        ).to(dev)
        with torch.no_grad():
            out = model(**enc, output_hidden_states=True)
        hs = torch.stack(out.hidden_states, dim=1)  # (B, L, T, d): every token of every layer
        last = enc["attention_mask"].sum(1) - 1
        rows = torch.arange(len(idx), device=dev)
        return hs[rows, :, last], out.logits[rows, last][:, inp.ans_ids]

    return timed_loop(args, inp, dev, inp.unsorted, step, work)
