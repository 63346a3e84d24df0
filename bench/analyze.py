"""Benchmark of the analysis stage at full MMLU scale (not a timed test).

Builds (or takes with --store) a synthetic store of SmolLM2's shape — 14,042 examples x 31 depths
x 576 hidden, vocabulary 49,152 — written through ``layercal.format`` so it is a real store, then
prints the time of ``analyze_store`` (no cache), the time of one plain sequential read of
``resid``, their ratio, the peak RSS and the machine (``bench.harness.machine``). The last line
is one JSON object.

The machine's speed drifts between runs, so reads and analyses alternate (``--repeats`` of
each, after one warm-up read): ``analysis_vs_read`` is the best analysis over the best read,
``analysis_vs_read_median`` the median over the pairs (each analysis over the read just before).

The synthetic W_U repeats 512 distinct rows 96 times, so the log-sum-exp and entropy recorded at
build time are exact and cheap (log 96 + those over the distinct rows); the analysis does not
know and computes over all 49,152 rows. The residuals carry a planted answer signal that rises with depth.

    python -m bench.analyze [--store PATH] [--keep] [--n-boot 1000] [--vocab-examples N|all|auto]
                            [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import (
    MMLU_N,
    REPO,
    SMOLLM2_DEPTHS,
    SMOLLM2_HIDDEN,
    SMOLLM2_VOCAB,
    describe_machine,
    machine,
    peak_rss,
    report,
    timed,
)

N, L, D, V = MMLU_N, SMOLLM2_DEPTHS, SMOLLM2_HIDDEN, SMOLLM2_VOCAB
K, R = 4, 512  # answer options; distinct rows of the synthetic W_U


def build(
    path: Path, n: int = N, seed: int = 0, depths: int = L, hidden: int = D, vocab: int = V
) -> None:
    """Write the synthetic store at ``path``: planted signal, exact recorded lens values.
    ``depths``, ``hidden``, ``vocab``: the shape (SmolLM2's by default; ``vocab`` a multiple of
    512)."""
    from layercal.lens import NormSpec, lens_logits
    from layercal.testing import mmlu_shaped_meta, synthetic_store

    L, D, V = depths, hidden, vocab  # noqa: N806 (the shape's usual names)
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(R, D)).astype(np.float32) / np.sqrt(D) * 1.5
    w_u = base[np.arange(V) % R]
    ids = np.arange(K)
    spec = NormSpec("rmsnorm", (1 + 0.1 * rng.normal(size=D)).astype(np.float32), None, 1e-5)
    label = rng.integers(0, K, n)
    meta = mmlu_shaped_meta(label)
    # signal strength per depth: none before ~16, rising to strong; an overconfident bump late
    depth = np.arange(L)
    strength = 6 / (1 + np.exp(-(depth - 20) / 2)) * np.where((depth > 23) & (depth < 30), 1.6, 1)
    unit = base[:K] / np.linalg.norm(base[:K], axis=1, keepdims=True) * np.sqrt(D)

    def block(b: int, sl: slice) -> dict[str, np.ndarray]:
        m = sl.stop - sl.start
        # the planted answer: the label with probability growing with depth, else a random one
        p_right = 0.25 + 0.5 / (1 + np.exp(-(depth - 20) / 2))
        right = rng.random((m, L)) < p_right
        pick = np.where(right, label[sl, None], rng.integers(0, K, (m, L)))
        h = rng.normal(size=(m, L, D)).astype(np.float32)
        h += (strength[None, :, None] * 0.02) * unit[pick]
        z = lens_logits(h, base[ids], spec)
        z_r = lens_logits(h, base, spec)  # (m, L, R): the distinct rows, each 96 times in W_U
        lse_r = _logsumexp(z_r)
        ent_r = lse_r - (np.exp(z_r - lse_r[..., None]) * z_r).sum(axis=-1)
        arrays = {"resid": h, "model_logits": z[:, -1], "lens_logits": z}
        arrays["lens_lse"] = np.log(V // R) + lse_r
        arrays["lens_entropy"] = np.log(V // R) + ent_r  # H over 96 equal copies: H_R + log 96
        return arrays

    ident = {"model": f"synthetic-{L}x{D}", "dataset": "synthetic", "split": "test"}
    synthetic_store(
        path,
        meta=meta,
        n_depth=L,
        w_u=w_u,
        norm=spec,
        answer_ids=ids,
        blocks=block,
        identity=ident,
        provenance={"template": {"name": "synthetic"}},
        finalize={"synthetic": True},
    )


def _logsumexp(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=-1)
    return m + np.log(np.exp(z - m[..., None]).sum(axis=-1))


def read_once(path: Path) -> float:
    """Seconds to read every chunk of resid once, shard by shard (sequential, zarr only)."""
    import zarr

    arr = zarr.open_group(str(path), mode="r")["resid"]
    assert isinstance(arr, zarr.Array)
    step = arr.shards[0] if arr.shards else arr.chunks[0]
    t0 = time.perf_counter()
    total = 0.0
    for lo in range(0, arr.shape[0], step):
        total += float(np.asarray(arr[lo : lo + step]).sum(dtype=np.float64))
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--store", type=Path, help="use this store (built there if it does not exist)")
    p.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--keep", action="store_true", help="keep the temporary store")
    p.add_argument("--n", type=int, default=N, help="examples (default: MMLU test, 14042)")
    p.add_argument("--depths", type=int, default=L, help=f"depths of a built store (default {L})")
    p.add_argument("--hidden", type=int, default=D, help=f"hidden size of a built store ({D})")
    p.add_argument("--vocab", type=int, default=V, help=f"vocabulary, a multiple of {R} ({V})")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument(
        "--vocab-examples", default="auto", help="N, 'all' or 'auto' (default: the library's)"
    )
    p.add_argument("--repeats", type=int, default=3, help="reads and analyses, alternating")
    args = p.parse_args(argv)
    if args.build_only:
        build(args.store, args.n, depths=args.depths, hidden=args.hidden, vocab=args.vocab)
        return 0

    tmp = None
    store = args.store
    if store is None:
        tmp = Path(tempfile.mkdtemp(prefix="layercal-bench-"))
        store = tmp / "synthetic.zarr"
    if not store.exists():
        t0 = time.perf_counter()
        # built in a child process so that its memory does not count in this one's peak RSS
        cmd = [
            sys.executable,
            "-m",
            "bench.analyze",
            "--build-only",
            "--store",
            str(store.resolve()),
        ]
        cmd += ["--n", str(args.n), "--depths", str(args.depths), "--hidden", str(args.hidden)]
        cmd += ["--vocab", str(args.vocab)]
        subprocess.run(cmd, check=True, cwd=REPO)
        print(f"built {store} in {time.perf_counter() - t0:.1f} s", flush=True)
    try:
        return _measure(store, args)
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def _measure(store: Path, args: argparse.Namespace) -> int:
    from analyze.analysis import analyze_store

    size = sum(f.stat().st_size for f in (store / "resid").rglob("*") if f.is_file())
    read_once(store)  # warm the page cache, so that both timings see the same cache state
    import dask

    # dask's first compute in a process imports dask.distributed (~0.6 s, once per process,
    # whatever the data): paid here, outside both timings
    dask.compute(dask.delayed(int)(0))
    vocab = args.vocab_examples
    vocab_n = "auto" if vocab in (None, "auto") else None if vocab == "all" else int(vocab)
    load = os.getloadavg()[0]
    reads, runs = [], []
    for _ in range(args.repeats):  # alternate, so that a drift of the machine hits both alike
        reads.append(timed(lambda: read_once(store)))
        runs.append(timed(lambda: analyze_store(store, n_boot=args.n_boot, vocab_examples=vocab_n)))
    rss_mb = peak_rss() / 2**20
    best = min(range(len(runs)), key=lambda i: runs[i][1])
    res, analysis_s, analysis_cpu = runs[best]
    read_s, read_cpu = min(r[1] for r in reads), min(r[2] for r in reads)
    pairs = [a[1] / r[1] for a, r in zip(runs, reads)]
    timing = res.meta.get("timing", {})
    out = {
        "n_examples": int(res.meta["n_examples"]),
        "n_layers": int(res.meta["n_layers"]),
        "resid_bytes_on_disk": size,
        "repeats": args.repeats,
        "read_s": round(read_s, 3),
        "analysis_s": round(analysis_s, 3),
        "analysis_vs_read": round(analysis_s / read_s, 3),
        "analysis_vs_read_median": round(float(np.median(pairs)), 3),
        "analysis_vs_read_pairs": [round(x, 3) for x in pairs],
        "read_cpu_s": round(read_cpu, 3),
        "analysis_cpu_s": round(analysis_cpu, 3),
        "analysis_vs_read_cpu": round(analysis_cpu / read_cpu, 3),
        "peak_rss_mb": round(rss_mb, 1),
        "load_avg_1min": round(load, 2),
        "cpus": os.cpu_count(),
        "vocab_examples": res.meta["vocab"]["n_examples"],
        "n_boot": args.n_boot,
        "stages_s": {k: round(float(v), 3) for k, v in timing.items()},
        "checks_ok": bool(res.meta["checks"]["ok"]),
        "landmarks": {k: res.landmarks.get(k) for k in ("rise_layer", "plateau_layer")},
    }
    mib = size / 2**20
    print(
        f"resid on disk: {mib:.0f} MiB; one sequential read: {read_s:.2f} s ({read_cpu:.2f} CPU s),"
        f" best of {args.repeats}"
    )
    print(
        f"analyze_store (no cache): {analysis_s:.2f} s ({analysis_cpu:.2f} CPU s), best of "
        f"{args.repeats}; vocabulary sample {out['vocab_examples']} examples"
    )
    print(
        f"ratio: {analysis_s / read_s:.2f}x one read (median of the pairs "
        f"{out['analysis_vs_read_median']:.2f}x; CPU time {analysis_cpu / read_cpu:.2f}x)"
    )
    print(f"stages: {out['stages_s']}")
    print(f"peak RSS: {rss_mb:.0f} MiB; load average at start: {load:.1f} on {os.cpu_count()} CPUs")
    # after the peak RSS is taken: the machine's description imports torch (extract's hardware)
    host = machine()
    print(describe_machine(host), flush=True)
    out["machine"] = host
    report(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
