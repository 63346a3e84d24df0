"""Benchmark of steering (not a timed test).

1. Online, with the model: the cost of one extra α in a last-position sweep with KV reuse (the
   prompt without its last token cached once, then one token per α), as a fraction of one full
   forward pass over the same prompts. Target: <= 0.1.
2. Offline: the sweep time per α on a full-size store — SmolLM2's shape on all of MMLU, 14,042
   examples x 31 depths x 576 hidden, vocabulary 49,152, written through ``layercal.format`` —
   steered at the last depth: answer logits plus every metric, per α.

    python -m bench.steer [--model smollm2-135m] [--prompts 32] [--threads 1] [--store PATH] [--keep]

On a shared machine pass ``--threads 1``: with two OpenMP threads and a busy core every small
torch op waits ~6 ms for the descheduled thread, which swamps one-token steps.

The synthetic store holds random residuals with their answer-lens logits recorded (steering
checks them); its recorded lens_lse and lens_entropy are zeros (nothing here reads them). The
last line of the output is one JSON object.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import MMLU_N, SMOLLM2_DEPTHS, SMOLLM2_HIDDEN, SMOLLM2_VOCAB, data_dir, report

N, L, D, V = MMLU_N, SMOLLM2_DEPTHS, SMOLLM2_HIDDEN, SMOLLM2_VOCAB
K = 4  # answer options


def build_store(path: Path, n: int = N, seed: int = 0) -> None:
    """A full-size synthetic store: random residuals whose norm grows with depth."""
    from layercal import format as fmt
    from layercal.lens import NormSpec, lens_logits
    from layercal.testing import mmlu_shaped_meta, synthetic_store

    rng = np.random.default_rng(seed)
    meta = mmlu_shaped_meta(rng.integers(0, K, n))
    w_u = (rng.standard_normal((V, D), dtype=np.float32) / np.sqrt(D)).astype(np.float32)
    spec = NormSpec("rmsnorm", np.ones(D, np.float32), None, 1e-5)
    ids = np.arange(K)
    growth = np.linspace(1, 20, L, dtype=np.float32)[None, :, None]

    def block(b: int, sl: slice) -> dict[str, np.ndarray]:
        m = sl.stop - sl.start
        resid = rng.standard_normal((m, L, D), dtype=np.float32) * growth
        z = lens_logits(resid, w_u[ids], spec)  # the answer lens: steering checks it
        zeros = {"lens_lse": np.zeros((m, L)), "lens_entropy": np.zeros((m, L))}
        return {"resid": resid, "model_logits": z[:, -1], "lens_logits": z, **zeros}

    ident = {
        "model": "synthetic-smollm2-shape",
        "dataset": "synthetic",
        "split": "test",
        "w_u_sha256": fmt.sha256_bytes(w_u),
    }
    synthetic_store(
        path,
        meta=meta,
        n_depth=L,
        w_u=w_u,
        norm=spec,
        answer_ids=ids,
        blocks=block,
        identity=ident,
        provenance={},
        finalize={"finished": "bench"},
    )


def offline(store: Path, alphas: list[float]) -> dict[str, float]:
    """Seconds to load the last depth, and per α: steered answer logits and all metrics."""
    from analyze.calibration import logit_metrics
    from analyze.interventions.steer_data import StoreData
    from analyze.lens import open_store

    t0 = time.perf_counter()
    data = StoreData.of(open_store(store))
    load = time.perf_counter() - t0
    v = np.random.default_rng(1).normal(size=D)
    v /= np.linalg.norm(v)
    rows = np.arange(data.label.size)
    t0 = time.perf_counter()
    z = data.sweep(rows, v, float(np.linalg.norm(data.h, axis=1).mean()), alphas)
    logit_metrics(z, data.label, data.mask)
    per_alpha = (time.perf_counter() - t0) / len(alphas)
    return {"offline_load_last_layer_s": load, "offline_s_per_alpha": per_alpha}


def prompts_for(n: int, tokenizer: object) -> list[str]:
    """n MMLU prompts from the benchmark data folder, else filler text of similar length."""
    data = data_dir()
    if (Path(data) / "mmlu" / "test").is_dir():
        from extract.config import ExtractConfig
        from extract.run import prepare

        cfg = ExtractConfig(model="-", dataset="mmlu", out="-", data_dir=data, limit=n, seed=0)
        return prepare(cfg)[2]
    words = ["the", "of", "a", "question", "answer", "which", "following", "is", "true", "about"]
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(words, 120)) + "\nAnswer:" for _ in range(n)]


def online(
    model_name: str, n_prompts: int, batch: int, reps: int = 3, alphas: int = 8
) -> dict[str, float]:
    """Full forward vs one extra α (KV reuse) over the same prompts, at the last depth.

    Medians over ``reps`` repetitions (the machine may be shared): the full forward of all
    batches, and per batch the median of its ``alphas`` timed steps, summed over batches."""
    import torch

    from extract.forward.tokens import pad_batch, tokenize
    from extract.model.arch import resolve
    from extract.model.load import load_model
    from extract.online.steer import SteeringHook, forward_logits, kv_sweep

    torch.manual_seed(0)
    lm = load_model(model_name, dtype="float32", device="cpu")
    res = resolve(lm.model)
    seqs = tokenize(lm.tokenizer, prompts_for(n_prompts, lm.tokenizer))
    seqs.sort(key=len)
    batches = [
        pad_batch(lm.tokenizer, seqs[s : s + batch], "cpu") for s in range(0, len(seqs), batch)
    ]
    vec = torch.randn(res.norm.weight.shape[0])
    answers = [0, 1, 2, 3]
    full: list[float] = []
    timings: dict[str, list[float]] = {}
    with SteeringHook(res, res.n_depth - 1, vec) as hook:
        for _ in range(reps):
            hook.coef = 1.0
            t0 = time.perf_counter()
            for ids, mask in batches:
                forward_logits(lm.model, ids, mask, answers)
            full.append(time.perf_counter() - t0)
            for ids, mask in batches:  # each step is timed inside: one token per α
                kv_sweep(lm.model, hook, ids, mask, answers, [1.0] * alphas, timings)
    t_full = float(np.median(full))
    steps = np.asarray(timings["step"]).reshape(reps, len(batches), alphas)
    t_extra = float(np.median(np.median(steps, axis=2).sum(axis=1)))  # one α, every batch
    return {
        "online_prompts": len(seqs),
        "online_mean_tokens": float(np.mean([len(s) for s in seqs])),
        "full_forward_s": t_full,
        "prefix_s": float(np.sum(timings["prefix"]) / reps),
        "extra_alpha_s": t_extra,
        "extra_alpha_vs_full_forward": t_extra / t_full,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--store", help="an existing full-size store (default: build one in a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the built store and print its path")
    p.add_argument("--skip-online", action="store_true")
    p.add_argument("--skip-offline", action="store_true")
    p.add_argument(
        "--threads",
        type=int,
        help="torch threads (on a shared machine, 1 avoids OpenMP wake-up stalls of ~6 ms per op)",
    )
    args = p.parse_args(argv)
    out: dict[str, float | str] = {}
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        out["torch_threads"] = args.threads
    if not args.skip_online:
        out.update(online(args.model, args.prompts, args.batch_size))
        print(
            f"online: full forward {out['full_forward_s']:.2f} s over {out['online_prompts']} "
            f"prompts; one extra α {out['extra_alpha_s']:.3f} s "
            f"= {out['extra_alpha_vs_full_forward']:.3f} of a full forward",
            flush=True,
        )
    if args.skip_offline:
        report(out)
        return 0
    tmp = None
    store = Path(args.store) if args.store else None
    if store is None:
        tmp = Path(tempfile.mkdtemp(prefix="layercal-bench-steer-"))
        store = tmp / "full.zarr"
        t0 = time.perf_counter()
        build_store(store)
        out["build_store_s"] = time.perf_counter() - t0
    try:
        out.update(offline(store, [-1.0, -0.5, -0.25, -0.1, 0.1, 0.25, 0.5, 1.0]))
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"offline ({N} x {L} x {D}): last depth loaded in {out['offline_load_last_layer_s']:.2f} s; "
        f"{out['offline_s_per_alpha']:.3f} s per α",
        flush=True,
    )
    if tmp is not None and args.keep:
        out["store"] = str(store)
    report(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
