"""``python -m bench.extract``: the options, then the parent (or, with ``--child``, one run)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import bench.extract
from bench.extract.compare import report_lines, run_parent
from bench.extract.inputs import SHOT_SUBJECTS
from bench.extract.variants import DEFAULT_VARIANTS, RESULT_TAG, SHOT_VARIANTS, VARIANTS, run_child
from bench.harness import child_report, data_dir, report


def _batch_size(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("--batch-size must be at least 1")
    return n


def _variants(text: str) -> list[str]:
    vs = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in vs if v not in VARIANTS]
    if bad or not vs:
        raise argparse.ArgumentTypeError(
            f"unknown variants {bad}; choose from {', '.join(VARIANTS)}"
        )
    return vs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from extract.config import parse_max_batch_tokens  # the same option as `layercal extract`

    p = argparse.ArgumentParser(
        description=bench.extract.__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--n", type=int, default=512, help="number of prompts (default 512)")
    p.add_argument(
        "--model",
        default="smollm2-135m",
        help="anything `layercal extract --model` takes, or random:llama-3.2-1b / random:llama-3-8b",
    )
    p.add_argument("--batch-size", type=_batch_size, default=16)
    p.add_argument(
        "--max-batch-tokens",
        type=parse_max_batch_tokens,
        default="auto",
        help="layercal's token budget per forward (extract --max-batch-tokens); `bare` uses the "
        "same batches, the `-sorted` variants plain sorted batches of --batch-size",
    )
    p.add_argument("--repeats", type=int, default=2, help="interleaved repeats (median)")
    p.add_argument(
        "--variants",
        type=_variants,
        default=None,
        help=f"comma-separated subset of {','.join(VARIANTS)} (default: all but bare-unsorted "
        f"and the --shots ones; with --shots: {','.join(SHOT_VARIANTS)})",
    )
    p.add_argument(
        "--shots",
        type=int,
        default=0,
        help="K-shot prompts of --n questions of each of --subjects, with and without prefix "
        "reuse and zero-shot: prints prefix_reuse_vs_full (wall-clock ratio) and "
        "peak_rss_reuse_vs_zeroshot",
    )
    p.add_argument(
        "--subjects",
        type=lambda t: [x.strip() for x in t.split(",") if x.strip()],
        default=None,
        help=f"MMLU subjects for --shots (default {','.join(SHOT_SUBJECTS)})",
    )
    p.add_argument("--data-dir", default=None, help="else $LAYERCAL_DATA_DIR, else ../shared/data")
    p.add_argument("--dataset", default="mmlu")
    p.add_argument("--split", default="test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu", "mps"])
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads per run (default: torch's choice); 1 makes CPU time a measure "
        "of work that other load on the machine hardly changes",
    )
    p.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.variants is None:
        args.variants = list(SHOT_VARIANTS if args.shots else DEFAULT_VARIANTS)
    args.data_dir = data_dir(args.data_dir)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child_report(RESULT_TAG, run_child(args))
        return 0
    print(
        f"model {args.model}, batch {args.batch_size}, {args.repeats} interleaved repeats of "
        f"{', '.join(args.variants)}",
        flush=True,
    )
    summary = run_parent(args)
    print("\n".join(report_lines(summary)))
    report(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
