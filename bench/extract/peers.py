"""The peers: TransformerLens (``run_with_cache``) and nnsight (``trace`` + ``.save()``), given
layercal's token ids or prompts, in dataset order or in length-sorted batches."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bench.extract.inputs import Inputs, load, timed_loop


def peer_source(args: argparse.Namespace) -> tuple[str, Any, Any]:
    """(path or config folder, model object or None, torch dtype) for a peer to load."""
    import torch

    from extract.model.load import pick_device, pick_dtype, resolve_model_path

    if args.model.startswith("random:"):
        lm = load(args)
        folder = tempfile.mkdtemp(prefix="bench-config-")
        lm.model.config.save_pretrained(folder)
        lm.tokenizer.save_pretrained(folder)
        return folder, lm, lm.model.dtype
    dtype: torch.dtype = pick_dtype(args.dtype, pick_device(args.device))
    return resolve_model_path(args.model)[0], None, dtype


def run_transformerlens(args: argparse.Namespace, work: Path, sort: bool) -> dict[str, Any]:
    import torch
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer

    from extract.forward.tokens import pad_batch
    from extract.model.load import pick_device

    path, lm, dtype = peer_source(args)
    dev = pick_device(args.device)
    kw: dict[str, Any] = {"device": dev, "dtype": dtype}
    if lm is not None:
        kw.update(hf_model=lm.model, tokenizer=lm.tokenizer)
    bridge = TransformerBridge.boot_transformers(path, **kw)
    tok = AutoTokenizer.from_pretrained(path)
    tok.pad_token = tok.pad_token or tok.eos_token
    inp = Inputs(args, tok, torch.device(dev))
    names = ["blocks.0.hook_resid_pre"] + [
        f"blocks.{i}.hook_resid_post" for i in range(bridge.cfg.n_layers)
    ]

    def step(idx: list[int]) -> tuple[Any, Any]:
        # layercal's token ids (TransformerLens would prepend BOS to strings), padded on the right
        ids, mask = pad_batch(tok, [inp.seqs[i] for i in idx], dev, "right")
        with torch.no_grad():
            logits, cache = bridge.run_with_cache(ids, attention_mask=mask, names_filter=names)
        last = mask.sum(1) - 1
        rows = torch.arange(len(idx), device=logits.device)
        resid = torch.stack([cache[n][rows, last] for n in names], dim=1)
        return resid, logits[rows, last][:, inp.ans_ids]

    batches = inp.sorted if sort else inp.unsorted
    return timed_loop(args, inp, torch.device(dev), batches, step, work)


def run_nnsight(args: argparse.Namespace, work: Path, sort: bool) -> dict[str, Any]:
    import torch
    from nnsight.modeling.transformers import TransformersModel

    from extract.model.arch import ARCHS
    from extract.model.load import pick_device

    path, lm, dtype = peer_source(args)
    dev = pick_device(args.device)
    if lm is not None:
        model = TransformersModel(lm.model, tokenizer=lm.tokenizer)
    else:
        model = TransformersModel(
            path, task="text-generation", dispatch=True, device_map=dev, dtype=dtype
        )
    tok = model.tokenizer
    tok.padding_side = "left"
    inp = Inputs(args, tok, torch.device(dev))
    entry = ARCHS[model.config.model_type]

    def envoy(paths: str) -> Any:
        for p in paths.split("|"):
            obj: Any = model
            try:
                for part in p.split("."):
                    obj = getattr(obj, part)
                return obj
            except AttributeError:
                continue
        raise AttributeError(paths)

    blocks, unembed = envoy(entry.blocks), envoy(entry.unembed)

    def step(idx: list[int]) -> tuple[Any, Any]:
        rows: list[Any] = []  # created before the trace (nnsight 0.8)
        with torch.no_grad(), model.trace([inp.prompts[i] for i in idx]):
            rows.append(blocks[0].input[:, -1].save())  # read in execution order
            for block in blocks:
                rows.append(block.output[:, -1].save())
            logits = unembed.output[:, -1].save()
        return torch.stack(rows, dim=1), logits[:, inp.ans_ids]

    batches = inp.sorted if sort else inp.unsorted
    return timed_loop(args, inp, torch.device(dev), batches, step, work)
