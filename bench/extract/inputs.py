"""What every variant shares: the model (a real one, or random weights in a real config), the
extraction config, the prompts, token ids and batches, and the timed loop of the hand-written
variants."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.harness import reset_peak_rss

SHOT_SUBJECTS = ["world_religions", "formal_logic"]

# Real configs (hub config.json of meta-llama/Llama-3.2-1B and Meta-Llama-3-8B); random weights.
RANDOM_SHAPES: dict[str, dict[str, Any]] = {
    "llama-3.2-1b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        vocab_size=128256,
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 32.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192,
        },
        tie_word_embeddings=True,
    ),
    "llama-3-8b": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=128256,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
        tie_word_embeddings=False,
    ),
}


def reset_peaks(device: Any) -> None:
    """Peak RSS afresh, and the CUDA peak on a GPU: loading is not in what is measured."""
    import torch

    reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def random_model(name: str, dtype: str, device: str) -> Any:
    """A LoadedModel with the real config of ``name`` and random weights (SmolLM2's tokenizer:
    its ids are all inside Llama 3's vocabulary; throughput does not depend on them)."""
    import torch
    import transformers as tf

    from extract.model.load import LoadedModel, pick_device, resolve_model_path

    if name not in RANDOM_SHAPES:
        raise SystemExit(f"unknown random shape {name!r}; use one of {', '.join(RANDOM_SHAPES)}")
    dev = pick_device(device)  # type: ignore[arg-type]
    torch_dtype = torch.float32 if dtype == "float32" else torch.bfloat16
    tok = tf.AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m")[0])
    tok.padding_side = "left"
    tok.pad_token = tok.pad_token or tok.eos_token
    torch.manual_seed(0)
    with torch.device(dev):
        model = tf.AutoModelForCausalLM.from_config(
            tf.LlamaConfig(**RANDOM_SHAPES[name]), dtype=torch_dtype
        )
    prov = {
        "model": f"random:{name}",
        "source": "random weights from the real config",
        "dtype": str(torch_dtype).removeprefix("torch."),
        "device": dev,
        "model_type": "llama",
    }
    return LoadedModel(model.eval(), tok, prov)


def load(args: argparse.Namespace) -> Any:
    from extract.model.load import load_model

    if args.model.startswith("random:"):
        dtype = "bfloat16" if args.dtype == "auto" else args.dtype
        return random_model(args.model.removeprefix("random:"), dtype, args.device)
    return load_model(args.model, dtype=args.dtype, device=args.device)


def extract_config(args: argparse.Namespace, out: str, variant: str = "layercal") -> Any:
    """The extraction every variant runs. With ``--shots K``: K-shot prompts of ``--n``
    questions of each of ``--subjects`` (a seeded sample, as ``--per-subject``); the variant
    ``layercal-full`` runs them without prefix reuse, ``layercal-zeroshot`` the same questions
    zero-shot (the memory reference)."""
    from extract.run import ExtractConfig

    select: dict[str, Any] = {"limit": args.n}
    if args.shots:
        select = {"subjects": args.subjects or SHOT_SUBJECTS, "per_subject": str(args.n)}
        select["shots"] = 0 if variant == "layercal-zeroshot" else args.shots
    return ExtractConfig(
        model=args.model,
        dataset=args.dataset,
        out=out,
        split=args.split,
        data_dir=args.data_dir,
        seed=args.seed,
        batch_size=args.batch_size,
        max_batch_tokens=args.max_batch_tokens,
        dtype=args.dtype,
        device=args.device,
        progress=False,
        prefix_reuse=variant != "layercal-full",
        **select,
    )


def sorted_batches(
    lengths: Sequence[int], batch_size: int, block: int, max_tokens: int | None = None
) -> list[list[int]]:
    """Per write block, longest first (ties by index), cut by ``extract.forward.batching.plan_batches``:
    with the run's token budget these are exactly extract's batches; without (None), plain
    length-sorted batches of ``batch_size``, what a researcher who sorts would write."""
    from extract.forward.batching import plan_batches

    out = []
    for start in range(0, len(lengths), block):
        sub = lengths[start : start + block]
        out += [[start + i for i in b] for b in plan_batches(sub, batch_size, max_tokens)]
    return out


def unsorted_batches(n: int, batch_size: int) -> list[list[int]]:
    return [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]


def padded_tokens(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> int:
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


class Inputs:
    """Prompts, token ids, answer ids and batches, identical in every child."""

    def __init__(
        self, args: argparse.Namespace, tok: Any, device: Any, variant: str = "layercal"
    ) -> None:
        from extract.forward.batching import default_max_tokens
        from extract.forward.tokens import answer_token_ids, tokenize
        from extract.run import prepare
        from layercal.format import DEFAULT_BLOCK

        ds, _, self.prompts = prepare(extract_config(args, "", variant))
        self.seqs = tokenize(tok, self.prompts)
        self.lengths = [len(s) for s in self.seqs]
        self.ans_ids = answer_token_ids(tok, self.prompts[:1], ds.max_choices)
        budget = args.max_batch_tokens
        budget = default_max_tokens(device.type) if budget == "auto" else budget
        self.max_batch_tokens = budget
        # extract's own batches (the token budget of this run) and plain sorted batches
        self.planned = sorted_batches(self.lengths, args.batch_size, DEFAULT_BLOCK, budget)
        self.sorted = sorted_batches(self.lengths, args.batch_size, DEFAULT_BLOCK)
        self.unsorted = unsorted_batches(len(self.seqs), args.batch_size)

    def counts(self) -> dict[str, int]:
        return {"n": len(self.seqs), "tokens": sum(self.lengths)}


def timed_loop(
    args: argparse.Namespace,
    inp: Inputs,
    device: Any,
    batches: list[list[int]],
    step: Callable[[list[int]], tuple[Any, Any]],
    work: Path,
) -> dict[str, Any]:
    """Warm up on the shortest prompts, then time ``step`` over ``batches`` plus ``np.save``."""
    import numpy as np
    import torch

    n = len(inp.seqs)
    short = sorted(range(n), key=lambda i: inp.lengths[i])[: min(4, n)]
    step(short)  # warm-up: first-call allocations and kernel selection
    resid: np.ndarray | None = None
    logits: np.ndarray | None = None
    reset_peaks(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for idx in batches:
        r, z = step(idx)
        if r is None:
            continue
        r, z = r.float().cpu().numpy(), z.float().cpu().numpy()
        if resid is None:
            resid = np.empty((n, *r.shape[1:]), np.float32)
            logits = np.empty((n, *z.shape[1:]), np.float32)
        resid[idx], logits[idx] = r, z  # type: ignore[index]
    if resid is not None and logits is not None:
        np.save(work / "resid.npy", resid)
        np.save(work / "model_logits.npy", logits)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        **inp.counts(),
        "padded_tokens": padded_tokens(inp.lengths, batches),
        "resid": str(work / "resid.npy") if resid is not None else None,
    }
