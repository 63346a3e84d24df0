"""bfloat16 against float32 on this machine: extraction speed, peak memory, and how far the
per-layer accuracy and ECE of the two stores differ (issue 10: the CPU default comes from these
figures).

    .venv/bin/python -m bench.dtype --model qwen2.5-coder-1.5b --n 200
    .venv/bin/python -m bench.dtype --model smollm2-135m --n 200 --dtypes float32,bfloat16

The same N MMLU test questions (a seeded sample of all subjects, or ``--subjects``) are
extracted once per dtype, each in its own process (model loading not timed; peak RSS counted
from the end of loading), then both stores are analysed with the same settings. The last line of
output is one JSON object: ``prompts_per_s``, ``bf16_speedup``, ``peak_rss_bytes``,
``max_abs_delta_ece``, ``max_abs_delta_accuracy``, ``max_abs_delta_mean_confidence`` (bf16 minus
fp32, over all depths) and the per-layer rows.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness import (
    child_report,
    data_dir,
    describe_machine,
    machine,
    peak_rss,
    report,
    reset_peak_rss,
    spawn,
)

TAG = "DTYPE_RESULT "


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One extraction in this process: load (untimed), reset the peak, extract, report."""
    from extract.model.load import load_model
    from extract.run import ExtractConfig, extract

    loaded = load_model(args.model, dtype=args.child, device="cpu")
    reset_peak_rss()  # loading is not in the peak
    cfg = ExtractConfig(
        model=args.model,
        dataset="mmlu",
        out=args.out,
        subjects=args.subjects,
        data_dir=args.data_dir,
        limit=args.n,
        seed=args.seed,
        batch_size=args.batch_size,
        dtype=args.child,
        progress=False,
    )
    t0 = time.perf_counter()
    summary = extract(cfg, loaded=loaded)
    seconds = time.perf_counter() - t0
    return {"n": summary.n_written, "seconds": seconds, "peak_rss_bytes": peak_rss()}


def per_layer(store: str) -> Any:
    from analyze.analysis import analyze_store

    cols = ["layer", "accuracy", "ece", "mean_confidence"]
    return analyze_store(store, bins=10, n_boot=10, vocab_examples=0).layers.select(cols)


def compare(stores: dict[str, str], runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    tables = {d: per_layer(s) for d, s in stores.items()}
    out: dict[str, Any] = {
        "prompts_per_s": {d: r["n"] / r["seconds"] for d, r in runs.items()},
        "peak_rss_bytes": {d: r["peak_rss_bytes"] for d, r in runs.items()},
    }
    if "float32" in tables and "bfloat16" in tables:
        a, b = tables["float32"], tables["bfloat16"]
        rows = []
        for ra, rb in zip(a.iter_rows(named=True), b.iter_rows(named=True)):
            rows.append(
                {
                    "layer": ra["layer"],
                    **{f"{k}_float32": ra[k] for k in ("accuracy", "ece", "mean_confidence")},
                    **{f"{k}_bfloat16": rb[k] for k in ("accuracy", "ece", "mean_confidence")},
                }
            )
        for k in ("ece", "accuracy", "mean_confidence"):
            out[f"max_abs_delta_{k}"] = max(
                abs(r[f"{k}_bfloat16"] - r[f"{k}_float32"]) for r in rows
            )
        pps = out["prompts_per_s"]
        out["bf16_speedup"] = pps["bfloat16"] / pps["float32"]
        out["per_layer"] = rows
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="qwen2.5-coder-1.5b")
    p.add_argument("--n", type=int, default=200, help="questions (default 200)")
    p.add_argument("--subjects", type=lambda t: [s for s in t.split(",") if s], default=None)
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="else $LAYERCAL_DATA_DIR, else ../shared/data")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.data_dir = data_dir(args.data_dir)
    if args.child:
        child_report(TAG, child(args))
        return 0
    dtypes = [d for d in args.dtypes.split(",") if d]
    host = machine()
    print(describe_machine(host), flush=True)
    with tempfile.TemporaryDirectory(prefix="layercal-dtype-") as tmp:
        stores, runs = {}, {}
        for d in dtypes:
            stores[d] = str(Path(tmp) / f"{d}.zarr")
            given = list(argv if argv is not None else sys.argv[1:])
            extra = ["--child", d, "--out", stores[d], "--data-dir", args.data_dir]
            r, proc = spawn("bench.dtype", [*given, *extra], TAG)
            if r is None:
                sys.stderr.write(proc.stderr[-3000:])
                raise SystemExit(f"the {d} extraction failed (exit {proc.returncode})")
            runs[d] = r
            print(
                f"{d:<9} {r['n']} prompts in {r['seconds']:.1f} s = {r['n'] / r['seconds']:.2f}/s, "
                f"peak RSS after loading {r['peak_rss_bytes'] / 2**30:.2f} GiB",
                flush=True,
            )
        result = compare(stores, runs)
    result.update(model=args.model, n=args.n, batch_size=args.batch_size, threads=os.cpu_count())
    result["machine"] = {**host, "load_average_end": [round(x, 2) for x in os.getloadavg()]}
    if "per_layer" in result:
        print(f"{'layer':>5} {'acc fp32':>9} {'acc bf16':>9} {'ECE fp32':>9} {'ECE bf16':>9}")
        for r in result["per_layer"]:
            print(
                f"{r['layer']:>5} {r['accuracy_float32']:>9.3f} {r['accuracy_bfloat16']:>9.3f} "
                f"{r['ece_float32']:>9.3f} {r['ece_bfloat16']:>9.3f}"
            )
        print(
            f"bf16 / fp32 speed {result['bf16_speedup']:.2f}x; largest per-layer |ΔECE| "
            f"{result['max_abs_delta_ece']:.4f}, |Δaccuracy| {result['max_abs_delta_accuracy']:.4f}"
        )
    report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
