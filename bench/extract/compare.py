"""The parent side: run the variants interleaved (A B C A B C), each in a child process;
compare their residuals with layercal's; medians, ratios and the report lines."""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.extract.inputs import SHOT_SUBJECTS
from bench.extract.variants import LABELS, PEERS, RESULT_TAG
from bench.harness import spawn

# the options a child gets from the parent's (the rest are the parent's own)
CHILD_OPTIONS = (
    "n",
    "model",
    "batch_size",
    "data_dir",
    "dataset",
    "split",
    "seed",
    "dtype",
    "threads",
    "max_batch_tokens",
    "shots",
    "subjects",
)


def child_argv(args: argparse.Namespace, variant: str, work: Path) -> list[str]:
    """The options of the child process that runs one repeat of ``variant`` in ``work``."""
    argv = ["--child", variant, "--workdir", str(work)]
    for opt in CHILD_OPTIONS:
        val = getattr(args, opt)
        if opt == "subjects" and val is not None:
            val = ",".join(val)
        if opt == "max_batch_tokens" and val is None:
            val = 0  # no cap; left out, the child would fall back to "auto"
        if val is not None:
            argv += [f"--{opt.replace('_', '-')}", str(val)]
    return [*argv, "--device", args.device]


def _spawn(args: argparse.Namespace, variant: str, work: Path) -> dict[str, Any]:
    res, proc = spawn("bench.extract", child_argv(args, variant, work), RESULT_TAG)
    if res is not None:
        return res
    err = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    return {"failed": err[-1] if err else f"exit status {proc.returncode}", "stderr": proc.stderr}


def _resid_of(res: dict[str, Any]) -> Any:
    import numpy as np

    if res.get("store"):
        import zarr

        return np.asarray(zarr.open_array(res["store"] + "/resid", mode="r")[...])
    return np.load(res["resid"]) if res.get("resid") else None


def agreement(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """max |resid - layercal's resid| per variant (the naive loop: all depths but the last, which
    Hugging Face returns after the final norm)."""
    import numpy as np

    if "layercal" not in results:
        return {}
    ref = _resid_of(results["layercal"])
    out = {}
    for v, res in results.items():
        r = _resid_of(res) if v not in ("layercal", "layercal-zeroshot") else None
        if r is None or r.shape != ref.shape:
            continue
        depth = slice(0, -1) if v == "naive" else slice(None)
        out[v] = float(np.abs(r[:, depth] - ref[:, depth]).max())
    return out


def summarize(
    runs: dict[str, list[dict[str, Any]]],
    skipped: dict[str, str],
    diffs: dict[str, float],
    meta: dict[str, Any],
) -> dict[str, Any]:
    """Medians per variant and the headline ratios."""
    n = meta["n"]
    per: dict[str, dict[str, Any]] = {}
    for v, rs in runs.items():
        if not rs:
            continue
        secs = statistics.median(r["seconds"] for r in rs)
        disk = statistics.median(r.get("disk_bytes", 0) for r in rs)
        act = rs[0].get("activation_bytes", disk)
        per[v] = {
            "prompts_per_s": n / secs,
            "tokens_per_s": rs[0].get("tokens", meta["tokens"]) / secs,
            "seconds": [round(r["seconds"], 3) for r in rs],
            "cpu_seconds": [round(r.get("cpu_seconds", 0.0), 3) for r in rs],
            "padded_tokens": rs[0]["padded_tokens"],
            "peak_rss_bytes": int(statistics.median(r["peak_rss"] for r in rs)),
            "peak_device_bytes": rs[0].get("peak_device_bytes"),
            "disk_bytes_per_example": disk / n,
            "activation_bytes_per_example": act / n,
            "max_abs_diff_vs_layercal": diffs.get(v),
        }

    def ratio(a: str, b: str, key: str = "prompts_per_s") -> float | None:
        return per[a][key] / per[b][key] if a in per and b in per else None

    def cpu_ratio(a: str, b: str) -> float | None:
        if a not in per or b not in per or not all(per[v]["cpu_seconds"][0] for v in (a, b)):
            return None
        return statistics.median(per[b]["cpu_seconds"]) / statistics.median(per[a]["cpu_seconds"])

    peers = [v for v in per if v in PEERS]
    best = max(peers, key=lambda v: per[v]["prompts_per_s"]) if peers else None
    return {
        "layercal_vs_bare": ratio("layercal", "bare"),
        "layercal_vs_naive": ratio("layercal", "naive"),
        "layercal_vs_best_peer": ratio("layercal", best) if best else None,
        "best_peer": best,
        "peak_rss_vs_bare": ratio("layercal", "bare", "peak_rss_bytes"),
        "prompts_per_s": per["layercal"]["prompts_per_s"] if "layercal" in per else None,
        # CPU time (all threads) of the timed section: less sensitive to other load on the machine
        "layercal_vs_bare_cpu_time": cpu_ratio("layercal", "bare"),
        # --shots: wall-clock of full prompts over prefix reuse; peak RSS over the zero-shot run
        "prefix_reuse_vs_full": ratio("layercal", "layercal-full"),
        "peak_rss_reuse_vs_zeroshot": ratio("layercal", "layercal-zeroshot", "peak_rss_bytes"),
        **meta,
        "skipped": skipped,
        "variants": per,
    }


def report_lines(summary: dict[str, Any]) -> list[str]:
    per = summary["variants"]
    bare = per.get("bare", {}).get("prompts_per_s")
    gib = 2**30
    lines = [
        f"{'variant':<24}{'prompts/s':>10}{'tokens/s':>10}{'vs bare':>9}{'CPU s':>8}{'padded tok':>12}"
        f"{'peak RSS':>10}{'disk/ex':>10}{'max|diff|':>11}"
    ]
    for v, p in per.items():
        rel = f"{p['prompts_per_s'] / bare:.2f}x" if bare else "-"
        diff = p["max_abs_diff_vs_layercal"]
        lines.append(
            f"{v:<24}{p['prompts_per_s']:>10.2f}{p['tokens_per_s']:>10.0f}{rel:>9}"
            f"{statistics.median(p['cpu_seconds']):>8.1f}"
            f"{p['padded_tokens']:>12}{p['peak_rss_bytes'] / gib:>8.2f}GB"
            f"{p['disk_bytes_per_example'] / 1024:>8.0f}KB"
            f"{'-' if diff is None else f'{diff:.1e}':>11}"
        )
        if p.get("peak_device_bytes"):
            lines[-1] += f"  device peak {p['peak_device_bytes'] / gib:.2f}GB"
    for v, why in summary["skipped"].items():
        lines.append(f"skipped {LABELS.get(PEERS.get(v, ''), v)} ({v}): {why}")

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    if summary.get("shots"):
        lines.append(
            f"{summary['shots']}-shot: prefix reuse {fmt(summary['prefix_reuse_vs_full'])}x "
            f"faster than full prompts; peak RSS / zero-shot "
            f"{fmt(summary['peak_rss_reuse_vs_zeroshot'])}"
        )
        return lines
    lines.append(
        f"layercal / bare {fmt(summary['layercal_vs_bare'])} (CPU time: "
        f"{fmt(summary['layercal_vs_bare_cpu_time'])}), / naive "
        f"{fmt(summary['layercal_vs_naive'])}, / best peer ({summary['best_peer']}) "
        f"{fmt(summary['layercal_vs_best_peer'])}; peak RSS / bare {fmt(summary['peak_rss_vs_bare'])}"
    )
    return lines


def run_parent(args: argparse.Namespace) -> dict[str, Any]:
    variants = args.variants
    root = Path(tempfile.mkdtemp(prefix="layercal-bench-"))
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    skipped: dict[str, str] = {}
    diffs: dict[str, float] = {}
    try:
        for r in range(args.repeats):
            first: dict[str, dict[str, Any]] = {}
            for v in variants:
                if v in skipped:
                    continue
                work = root / f"r{r}-{v}"
                res = _spawn(args, v, work)
                if "skipped" in res or "failed" in res:
                    why = res.get("skipped") or f"failed: {res['failed']}"
                    if v not in PEERS:
                        sys.stderr.write(res.get("stderr", ""))
                        raise SystemExit(f"{v} failed: {why}")
                    skipped[v] = why
                    print(f"skipped {LABELS[PEERS[v]]} ({v}): {why}", flush=True)
                    continue
                if not any(runs.values()):
                    print(
                        f"{res['n']} prompts ({res['tokens']} tokens) on {res['device']}",
                        flush=True,
                    )
                runs[v].append(res)
                print(
                    f"[{r + 1}/{args.repeats}] {v:<24} {res['seconds']:8.2f} s  "
                    f"{res['n'] / res['seconds']:6.2f} prompts/s  "
                    f"peak RSS {res['peak_rss'] / 2**30:.2f} GB",
                    flush=True,
                )
                if r == 0:
                    first[v] = res
                else:
                    shutil.rmtree(work, ignore_errors=True)
            if r == 0:
                diffs = agreement(first)
                for v in first:
                    shutil.rmtree(root / f"r0-{v}", ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    first_run = next(rs[0] for rs in runs.values() if rs)
    info = {
        "n": first_run["n"],
        "tokens": first_run["tokens"],
        "batch_size": args.batch_size,
        "model": args.model,
        "device": first_run["device"],
        "repeats": args.repeats,
        "threads": args.threads or first_run["threads"],
        "shots": args.shots,
        "subjects": (args.subjects or SHOT_SUBJECTS) if args.shots else None,
    }
    return summarize(runs, skipped, diffs, info)
