"""Benchmark of ``layercal lens fit`` at Qwen's size (not a timed test; issue 18, item 5).

Builds (or takes with --store) a synthetic store of Qwen2.5-Coder-1.5B's shape — 3,308 examples
x 29 depths x 1,536 hidden, vocabulary 151,936 (W_U 0.93 GB in float32, so the token-set pass
streams a realistically sized unembedding) — written through ``layercal.format`` so it is a real
store, then fits every kind, each in its own process, and prints its wall time, CPU time and
peak RSS (against the size of the residual array, 0.59 GB). The last line is one JSON object.

The synthetic W_U repeats 1,187 distinct rows 128 times, so the log-sum-exp and entropy recorded
at build time are exact and cheap (log 128 + those over the distinct rows); the fit does not know
and streams all 151,936 rows. The residuals follow a near-identity linear map from depth to
depth plus noise, with two coordinates much larger than the rest (as real residual streams
have). ``tuned`` runs ``--tuned-max-iter`` L-BFGS iterations per depth and fold (default 6:
enough for L-BFGS's memory to reach its full size); the time of a full fit is extrapolated from
the time per iteration and printed as such.

    python -m bench.lens [--store PATH] [--keep] [--kinds temperature,shortcut,tuned]
                         [--folds 5] [--tuned-max-iter 6]

Every kind is measured in the same run, one after the other, so that the ratios between them
(and to the residual array) are measured under the same load: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import child_report, peak_rss, report, spawn, timed

N, L, D, V, K, R = 3308, 29, 1536, 151936, 4, 1187
TAG = "LENS_RESULT "


def build(path: Path, n: int = N, seed: int = 0, shape: tuple[int, int, int] = (L, D, V)) -> None:
    """Write the synthetic store at ``path``: linear maps between depths, exact lens records.
    ``shape``: (depths, hidden, vocabulary; a multiple of R) — smaller only for smoke runs."""
    L, D, V = shape  # the module's constants, smaller for a smoke run
    from layercal.lens import NormSpec, lens_logits
    from layercal.testing import mmlu_shaped_meta, synthetic_store

    rng = np.random.default_rng(seed)
    base = (rng.normal(size=(R, D)) / np.sqrt(D) * 3).astype(np.float32)
    w_u = base[np.arange(V) % R]
    ids = np.arange(K)
    spec = NormSpec("rmsnorm", (1 + 0.1 * rng.normal(size=D)).astype(np.float32), None, 1e-6)
    maps = [
        np.eye(D, dtype=np.float32) + rng.normal(0, 0.2 / np.sqrt(D), (D, D)).astype(np.float32)
        for _ in range(L - 1)
    ]
    big = np.where(np.arange(D) < 2, 20.0, 1.0).astype(np.float32)

    def block(b: int, sl: slice) -> dict[str, np.ndarray]:
        m = sl.stop - sl.start
        h = np.empty((m, L, D), np.float32)
        h[:, 0] = rng.normal(size=(m, D)).astype(np.float32) * big
        for layer in range(L - 1):
            h[:, layer + 1] = h[:, layer] @ maps[layer] + 0.3 * rng.normal(size=(m, D))
        z = lens_logits(h, base[ids], spec)
        z_r = lens_logits(h, base, spec)  # (m, L, R): the distinct rows, each 128 times in W_U
        top = z_r.max(axis=-1)
        lse_r = top + np.log(np.exp(z_r - top[..., None]).sum(axis=-1))
        ent_r = lse_r - (np.exp(z_r - lse_r[..., None]) * z_r).sum(axis=-1)
        return {
            "resid": h,
            "model_logits": z[:, -1],
            "lens_logits": z,
            "lens_lse": np.log(V // R) + lse_r,
            "lens_entropy": np.log(V // R) + ent_r,
        }

    ident = {"model": "synthetic-qwen-shape", "dataset": "synthetic", "split": "test"}
    synthetic_store(
        path,
        meta=mmlu_shaped_meta(rng.integers(0, K, n)),
        n_depth=L,
        w_u=w_u,
        norm=spec,
        answer_ids=ids,
        blocks=block,
        identity=ident,
        provenance={"template": {"name": "synthetic"}},
        finalize={"synthetic": True},
    )


def fit_only(store: Path, kind: str, out: Path, folds: int, max_iter: int) -> int:
    """Child process: fit one kind, report wall, CPU seconds and the peak RSS of this process
    on the harness's result line."""
    import analyze

    lens, wall, cpu = timed(
        lambda: analyze.fit_lens(store, kind, out, folds=folds, max_iter=max_iter, overwrite=True)
    )
    rec: dict[str, Any] = {"kind": kind, "fit_s": wall, "cpu_s": cpu}
    rec["peak_rss_mb"] = peak_rss() / 2**20
    if kind == "tuned":
        per_fold = lens.info["penalties"]["per_fold"]
        rec["iterations"] = sum(r.get("iterations", 0) for f in per_fold for r in f)
    child_report(TAG, rec)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--store", type=Path, help="use this store (built there if it does not exist)")
    p.add_argument("--keep", action="store_true", help="keep the temporary store and lenses")
    p.add_argument("--n", type=int, default=N, help="examples (default: Qwen's MMLU sample, 3308)")
    p.add_argument("--kinds", default="temperature,shortcut,tuned")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--tuned-max-iter", type=int, default=6)
    p.add_argument("--depths", type=int, default=L, help=argparse.SUPPRESS)  # smoke runs only
    p.add_argument("--hidden", type=int, default=D, help=argparse.SUPPRESS)
    p.add_argument("--vocab", type=int, default=V, help=argparse.SUPPRESS)
    p.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--fit-only", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.build_only:
        build(args.store, args.n, shape=(args.depths, args.hidden, args.vocab))
        child_report(TAG, {"built": str(args.store)})
        return 0
    if args.fit_only:
        return fit_only(args.store, args.fit_only, args.out, args.folds, args.tuned_max_iter)
    tmp = Path(tempfile.mkdtemp(prefix="layercal-bench-lens-"))
    store = args.store or tmp / "synthetic.zarr"
    try:
        if not store.exists():
            t0 = time.perf_counter()
            # built in a child process so that its memory does not count in the fits' peaks
            argv = ["--build-only", "--store", str(store), "--n", str(args.n)]
            argv += ["--depths", str(args.depths), "--hidden", str(args.hidden)]
            done, proc = spawn("bench.lens", [*argv, "--vocab", str(args.vocab)], TAG)
            if done is None:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            print(f"built {store} in {time.perf_counter() - t0:.1f} s", flush=True)
        return _measure(store, tmp, args)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def _measure(store: Path, tmp: Path, args: argparse.Namespace) -> int:
    import zarr

    shape = zarr.open_group(str(store), mode="r")["resid"].shape
    resid_mb = float(np.prod(shape)) * 4 / 2**20
    load = os.getloadavg()[0]
    kinds: dict[str, dict[str, Any]] = {}
    for kind in args.kinds.split(","):
        argv = ["--fit-only", kind, "--store", str(store), "--out", str(tmp / f"lens-{kind}")]
        argv += ["--folds", str(args.folds), "--tuned-max-iter", str(args.tuned_max_iter)]
        rec, proc = spawn("bench.lens", argv, TAG)
        if rec is None:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        rec["rss_vs_resid"] = rec["peak_rss_mb"] / resid_mb
        kinds[kind] = rec
        line = (
            f"{kind}: {rec['fit_s']:.1f} s ({rec['cpu_s']:.1f} CPU s), peak RSS "
            f"{rec['peak_rss_mb']:.0f} MiB = {rec['rss_vs_resid']:.2f}x the residual array"
        )
        if kind == "tuned":
            per = rec["fit_s"] / max(rec["iterations"], 1)
            rec["s_per_iteration"] = per
            line += (
                f"; {rec['iterations']} L-BFGS iterations in all, {per:.2f} s each: "
                f"a fit of up to 100 per depth and fold would take up to "
                f"{per * 100 * (shape[1] - 1) * args.folds / 3600:.1f} h"
            )
        print(line, flush=True)
    out = {
        "n_examples": shape[0],
        "n_depth": shape[1],
        "hidden": shape[2],
        "vocab": int(zarr.open_group(str(store), mode="r")["W_U"].shape[0]),
        "folds": args.folds,
        "resid_mb": round(resid_mb, 3),
        "load_avg_1min": round(load, 2),
        "cpus": os.cpu_count(),
        "kinds": {
            k: {x: round(v, 3) if isinstance(v, float) else v for x, v in r.items()}
            for k, r in kinds.items()
        },
    }
    print(
        f"residual array {resid_mb:.0f} MiB; load average at start {load:.1f} on "
        f"{os.cpu_count()} CPUs"
    )
    report(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
