"""``layercal extract``: command-line front end of :func:`extract.run.extract`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from layercal.format import DEFAULT_BLOCK


def _csv(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def parse_max_batch_tokens(text: str) -> int | str | None:
    """``--max-batch-tokens``: a number of tokens, 'auto', or 0 for no cap (None)."""
    if text == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        msg = f"expected a number of tokens or 'auto', got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 0:
        raise argparse.ArgumentTypeError("--max-batch-tokens must be >= 0 (0: no cap)")
    return value or None


def _batch_size(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or 'auto', got {text!r}"
        ) from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1 (or 'auto')")
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        help="built-in name (smollm2-135m), hub id (owner/name), local folder or .gguf file",
    )
    p.add_argument("--revision", help="hub revision (branch, tag or commit)")
    p.add_argument(
        "--dataset",
        required=True,
        help="mmlu, truthfulqa-mc1, or a local CSV/JSONL/Parquet multiple-choice file",
    )
    p.add_argument("--split", default="test", help="test | validation | dev (MMLU)")
    sel = p.add_mutually_exclusive_group()
    sel.add_argument("--subjects", type=_csv, help="comma-separated MMLU subjects")
    sel.add_argument("--category", choices=["humanities", "stem", "social_sciences", "other"])
    p.add_argument(
        "--data-dir",
        help="folder holding mmlu/ and truthfulqa/ (else $LAYERCAL_DATA_DIR, else the hub)",
    )
    p.add_argument(
        "--hub-repo",
        help="dataset repo for the hub fallback (default cais/mmlu, truthfulqa/truthful_qa)",
    )
    p.add_argument(
        "--limit", type=int, help="a seeded random sample of N examples, kept in dataset order"
    )
    p.add_argument(
        "--per-subject",
        metavar="N[,NAME=N...]",
        help="a seeded sample of at most N examples of each subject; NAME=N (a category or a "
        "subject, N or 'all') overrides it, e.g. 40,humanities=120; applied before --limit",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed for --limit, --per-subject and option shuffles"
    )
    p.add_argument(
        "--shots", type=int, default=0, help="k-shot exemplars per subject from MMLU dev"
    )
    p.add_argument("--template", help="prompt template file (JSON/TOML); default: lm-eval MMLU")
    p.add_argument("--out", required=True, help="store path, e.g. stores/NAME.zarr")
    p.add_argument(
        "--batch-size",
        type=_batch_size,
        default=16,
        help="prompts per forward pass, or 'auto': the largest power of two up to 256 that fits",
    )
    p.add_argument(
        "--max-batch-tokens",
        type=parse_max_batch_tokens,
        default="auto",
        metavar="N|auto|0",
        help="cap on padded tokens per forward pass (prompts x longest prompt); batches of long "
        "prompts get fewer prompts. 'auto' (default): 1024 on CPU, no cap on GPUs; 0: no cap",
    )
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu", "mps"])
    p.add_argument("--device-map", help='e.g. "auto" to spread a model larger than one GPU')
    p.add_argument("--attn-implementation", help="eager | sdpa | flash_attention_2")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--resume", action="store_true", help="continue an interrupted store")
    p.add_argument("--shard", default="0/1", help="i/n: fill blocks b with b %% n == i")
    p.add_argument(
        "--block-size",
        type=int,
        default=DEFAULT_BLOCK,
        help="examples per write block (multiple of 128)",
    )
    p.add_argument("--padding-side", default="left", choices=["left", "right"])
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from extract.run import ExtractConfig, extract, parse_shard

    if args.batch_size != "auto" and args.batch_size < 1:
        print("error: --batch-size must be at least 1", file=sys.stderr)
        return 2
    try:
        shard = parse_shard(args.shard)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cfg = ExtractConfig(
        model=args.model,
        dataset=args.dataset,
        out=args.out,
        split=args.split,
        subjects=args.subjects,
        category=args.category,
        data_dir=args.data_dir,
        limit=args.limit,
        per_subject=args.per_subject,
        seed=args.seed,
        shots=args.shots,
        template=args.template,
        batch_size=args.batch_size,
        max_batch_tokens=args.max_batch_tokens,
        dtype=args.dtype,
        device=args.device,
        device_map=args.device_map,
        revision=args.revision,
        trust_remote_code=args.trust_remote_code,
        attn_implementation=args.attn_implementation,
        resume=args.resume,
        shard=shard,
        block=args.block_size,
        padding_side=args.padding_side,
        progress=not args.no_progress,
        hub_repo=args.hub_repo,
    )
    if args.no_progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        summary = extract(cfg)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: finished blocks are kept; continue with the same command plus --resume "
            f"(store {args.out})",
            file=sys.stderr,
        )
        return 130
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("\n".join(summary.lines()))
    # a shard's job is done when its own blocks are; the store when every block is
    return 0 if (summary.shard_complete if shard[1] > 1 else summary.complete) else 1


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="layercal extract", description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))
