"""Benchmark of ``layercal explore`` at Qwen's sample size (not a timed test).

Builds (or takes with --store) a synthetic store of Qwen2.5-Coder-1.5B's sample shape — 3,308
questions x 29 depths x 1,536 hidden — through ``layercal.testing.synthetic_store``, with real
MMLU question texts from $LAYERCAL_DATA_DIR (the page holds them), then times, each in a fresh
process: ``layercal analyze`` (no cache: the whole analysis and report), ``layercal explore``
from that analysis' cache, and ``layercal explore --no-cache``; prints the page's size. The last
line is one JSON object.

The vocabulary is smaller than Qwen's (--vocab, default 32,768, its 512 distinct rows repeated)
so the store builds fast; the analysis' full-vocabulary sample costs less than on a real Qwen
store, which makes ``explore <= analyze`` harder to meet here, not easier.

    python -m bench.explore [--store PATH] [--keep] [--vocab 32768] [--n 3308]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N, L, D, K, R = 3308, 29, 1536, 4, 512


def questions(n: int, seed: int = 0) -> tuple[list[list[str]], list[str], list[int]]:
    """(rows: id, subject, question; choices; labels) of n MMLU test questions, seeded."""
    data = Path(os.environ.get("LAYERCAL_DATA_DIR", Path(__file__).parents[2] / "shared/data"))
    rows = []
    for f in sorted((data / "mmlu" / "test").glob("*_test.csv")):
        subject = f.name.removesuffix("_test.csv")
        with open(f, newline="") as fh:
            rows += [[subject, j, *r] for j, r in enumerate(csv.reader(fh))]
    pick = np.sort(np.random.default_rng(seed).choice(len(rows), n, replace=False))
    chosen = [rows[i] for i in pick]
    meta = [[f"mmlu/test/{r[0]}/{r[1]:04d}", r[0], r[2]] for r in chosen]
    return meta, [r[3:7] for r in chosen], ["ABCD".index(r[7].strip()) for r in chosen]


def build(path: Path, vocab: int, n: int = N, seed: int = 0) -> None:
    """The synthetic store: a planted answer signal rising with depth, exact recorded lens."""
    from layercal.lens import NormSpec, lens_logits
    from layercal.testing import example_meta, synthetic_store

    rng = np.random.default_rng(seed)
    meta_rows, choices, label = questions(n, seed)
    base = rng.normal(size=(R, D)).astype(np.float32) / np.sqrt(D) * 1.5
    spec = NormSpec("rmsnorm", (1 + 0.1 * rng.normal(size=D)).astype(np.float32), None, 1e-6)
    unit = base[:K] / np.linalg.norm(base[:K], axis=1, keepdims=True) * np.sqrt(D)
    depth = np.arange(L)
    strength = 6 / (1 + np.exp(-(depth - 20) / 2)) * np.where((depth > 22) & (depth < 28), 1.6, 1)
    lab = np.asarray(label)

    def block(b: int, sl: slice) -> dict[str, np.ndarray]:
        m = sl.stop - sl.start
        right = rng.random((m, L)) < 0.25 + 0.5 / (1 + np.exp(-(depth - 20) / 2))
        pick = np.where(right, lab[sl, None], rng.integers(0, K, (m, L)))
        h = rng.normal(size=(m, L, D)).astype(np.float32)
        h += (strength[None, :, None] * 0.02) * unit[pick]
        z_r = lens_logits(h, base, spec)  # (m, L, R): each distinct row vocab // R times
        top = z_r.max(-1)
        lse_r = top + np.log(np.exp(z_r - top[..., None]).sum(-1))
        ent_r = lse_r - (np.exp(z_r - lse_r[..., None]) * z_r).sum(-1)
        z = z_r[..., :K]
        return {
            "resid": h,
            "model_logits": z[:, -1],
            "lens_logits": z,
            "lens_lse": np.log(vocab // R) + lse_r,
            "lens_entropy": np.log(vocab // R) + ent_r,
        }

    meta = example_meta(
        label,
        [r[1] for r in meta_rows],
        example_ids=[r[0] for r in meta_rows],
        questions=[r[2] for r in meta_rows],
        choices=choices,
        n_tokens=100,
    )
    synthetic_store(
        path,
        meta=meta,
        n_depth=L,
        w_u=base[np.arange(vocab) % R],
        norm=spec,
        answer_ids=np.arange(K),
        blocks=block,
        identity={"model": "synthetic-qwen-shape", "dataset": "mmlu", "split": "test"},
        provenance={"template": {"name": "synthetic"}},
    )


def timed(args: list[str]) -> float:
    """Seconds of ``layercal ARGS`` in a fresh process (imports included)."""
    t0 = time.perf_counter()
    cmd = [sys.executable, "-c", "import sys; from layercal.cli import main; sys.exit(main())"]
    cmd += args
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=Path(__file__).parents[1])
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--store", type=Path, help="an existing store (default: build one)")
    p.add_argument("--keep", action="store_true", help="keep the built store and reports")
    p.add_argument("--vocab", type=int, default=32768)
    p.add_argument("--n", type=int, default=N, help=f"questions of the built store (default {N})")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-explore-"))
    store = args.store or work / "qwen-shape.zarr"
    if args.store is None:
        t0 = time.perf_counter()
        build(store, args.vocab, args.n)
        print(f"built {store} in {time.perf_counter() - t0:.0f} s", flush=True)
    report = work / "report"
    page = report / "explorer.html"
    res = {"n": args.n, "depths": L, "hidden": D, "vocab": args.vocab}
    res["analyze_s"] = timed(["analyze", str(store), "--out", str(report)])
    res["explore_cached_s"] = timed(["explore", str(store), "-o", str(page)])
    res["page_mb"] = page.stat().st_size / 1e6
    res["explore_no_cache_s"] = timed(["explore", str(store), "-o", str(page), "--no-cache"])
    res["explore_cached_vs_analyze"] = res["explore_cached_s"] / res["analyze_s"]
    res["explore_no_cache_vs_analyze"] = res["explore_no_cache_s"] / res["analyze_s"]
    for k, v in res.items():
        print(f"{k:30s} {v:.3f}" if isinstance(v, float) else f"{k:30s} {v}")
    print(json.dumps(res))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
