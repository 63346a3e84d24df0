"""Planted stores for the intervention tests: a calibration direction along one unit vector in the
layer deltas (``planted_store``), and random residuals (``random_store``)."""

from __future__ import annotations

import numpy as np

from layercal import format as fmt
from layercal.lens import NormSpec, lens_logits
from layercal.testing import example_meta, synthetic_store

SIGNAL = 2.0  # confidence_store: the answer signal's growth over depth
SUBJECTS = ("philosophy", "world_religions", "astronomy", "virology")


CATEGORY = {
    "philosophy": "humanities",
    "world_religions": "humanities",
    "astronomy": "stem",
    "virology": "other",
}


def identity(model: str, w_u: np.ndarray) -> dict:
    """The identity of a planted store of ``model`` (float32 MMLU test, W_U's sha256)."""
    return {
        "model": model,
        "dataset": "mmlu",
        "split": "test",
        "dtype": "float32",
        "w_u_sha256": fmt.sha256_bytes(w_u),
    }


def planted_direction(hidden: int, seed: int = 7) -> np.ndarray:
    u = np.random.default_rng(seed).normal(size=hidden)
    return u / np.linalg.norm(u)


def planted_store(path, *, n=160, depth=8, hidden=24, vocab=40, seed=0, w_seed=0, early=0):
    """A store whose layer deltas are c_i · u + noise (c_i ~ 1 + 0.8 N(0, 1)), with an answer
    signal that grows with depth; u = planted_direction(hidden). ``early``: the deltas into
    depths 1..early go along another direction, planted_direction(hidden, seed=8), instead."""
    rng = np.random.default_rng(seed)
    ids = np.array([3, 4, 5, 6])
    w_u = np.random.default_rng(w_seed).normal(size=(vocab, hidden)).astype(np.float32)
    spec = NormSpec("rmsnorm", (1 + 0.2 * rng.random(hidden)).astype(np.float32), None, 1e-5)
    label = rng.integers(0, 4, n)
    u = planted_direction(hidden)
    c = 1 + 0.8 * rng.normal(size=n)
    answer = w_u[ids] - w_u[ids].mean(axis=0)  # zero-mean answer signal: leaves the mean Δ to u
    h = np.empty((n, depth, hidden))
    h[:, 0] = rng.normal(size=(n, hidden)) * 2
    u_early = planted_direction(hidden, seed=8)
    for layer in range(1, depth):
        along = u_early if layer <= early else u
        step = c[:, None] * along * 2 + 0.3 * rng.normal(size=(n, hidden))
        h[:, layer] = h[:, layer - 1] + step + 0.08 * answer[label]
    resid = h.astype(np.float32)
    subject = [SUBJECTS[i % len(SUBJECTS)] for i in range(n)]
    meta = example_meta(
        label,
        subject,
        categories=[CATEGORY[s] for s in subject],
        example_ids=[f"mmlu/test/{s}/{i:04d}" for i, s in enumerate(subject)],
        questions=[f"q{i}" for i in range(n)],
    )
    ident = {
        "model": f"synthetic-{hidden}-{w_seed}",
        "dataset": "mmlu",
        "split": "test",
        "dtype": "float32",
        "w_u_sha256": fmt.sha256_bytes(w_u),
    }
    return synthetic_store(
        path,
        meta=meta,
        n_depth=depth,
        w_u=w_u,
        norm=spec,
        answer_ids=ids,
        resid=resid,
        identity=ident,
        provenance={"template": {"name": "t"}},
        finalize={"finished": "test"},
    )


def random_store(path, *, n=64, depth=4, hidden=16, vocab=40, seed=0, kind="rmsnorm"):
    """A small complete store without a model (random residuals and W_U)."""
    rng = np.random.default_rng(seed)
    ids = np.array([3, 4, 5, 6])
    w_u = rng.normal(size=(vocab, hidden)).astype(np.float32)
    weight = (1 + 0.3 * rng.normal(size=hidden)).astype(np.float32)
    bias = (0.1 * rng.normal(size=hidden)).astype(np.float32) if kind == "layernorm" else None
    spec = NormSpec(kind, weight, bias, 1e-5)
    resid = (
        rng.normal(size=(n, depth, hidden)).astype(np.float32) * np.arange(1, depth + 1)[:, None]
    )
    subjects = ["philosophy", "astronomy"]
    meta = example_meta(
        rng.integers(0, 4, n),
        [subjects[i % 2] for i in range(n)],
        categories=["humanities" if i % 2 == 0 else "stem" for i in range(n)],
        example_ids=[f"mmlu/test/{subjects[i % 2]}/{i:04d}" for i in range(n)],
        questions=[f"q{i}" for i in range(n)],
    )
    ident = {
        "model": f"synthetic-{seed}-{hidden}",
        "dataset": "mmlu",
        "split": "test",
        "dtype": "float32",
        "w_u_sha256": fmt.sha256_bytes(w_u),
    }
    return synthetic_store(
        path,
        meta=meta,
        n_depth=depth,
        w_u=w_u,
        norm=spec,
        answer_ids=ids,
        resid=resid,
        identity=ident,
        provenance={"template": {"name": "t"}},
        block=128,
        finalize={"finished": "test"},
    )


def confidence_store(
    path,
    *,
    n=400,
    depth=8,
    hidden=24,
    vocab=40,
    seed=0,
    w_seed=0,
    overconfident=True,
    dataset="mmlu",
):
    """A store where steering along the planted direction u acts as a temperature: W_U u = 0
    exactly and the RMSNorm gain is 1, so adding α·u changes no logit except through the norm
    (u is N_1, the null space). The layer deltas go along u as in ``planted_store``; the answer
    signal points at a "predicted" option. ``overconfident``: the label is that option for about
    half the examples (confidence about 0.9, accuracy about 0.5: steering along +u helps);
    otherwise the label is drawn from the lens's own last-layer probabilities (calibrated:
    nothing should help). ``dataset`` "truthfulqa": one subject, as TruthfulQA stores have."""
    rng = np.random.default_rng(seed)
    ids = np.array([3, 4, 5, 6])
    u = planted_direction(hidden)
    g = np.random.default_rng([w_seed, 17]).normal(size=(vocab, hidden))
    w_u = (0.25 * (g - np.outer(g @ u, u))).astype(np.float32)  # every row orthogonal to u
    spec = NormSpec("rmsnorm", np.ones(hidden, np.float32), None, 1e-5)
    answer = w_u[ids].astype(np.float64)
    answer -= answer.mean(axis=0)
    pred = rng.integers(0, 4, n)
    c = 1 + 1.5 * rng.normal(size=n)
    h = np.empty((n, depth, hidden))
    h[:, 0] = rng.normal(size=(n, hidden))
    for layer in range(1, depth):
        step = c[:, None] * u + 0.2 * rng.normal(size=(n, hidden))
        h[:, layer] = h[:, layer - 1] + step + SIGNAL * layer * answer[pred] / depth
    resid = h.astype(np.float32)
    if overconfident:
        other = (pred + rng.integers(1, 4, n)) % 4
        label = np.where(rng.random(n) < 0.5, pred, other)
    else:
        z = lens_logits(resid[:, -1].astype(np.float64), w_u[ids], spec)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        label = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    tqa = dataset == "truthfulqa"
    subject = ["truthfulqa" if tqa else SUBJECTS[i % len(SUBJECTS)] for i in range(n)]
    meta = example_meta(
        label,
        subject,
        categories=[s if tqa else CATEGORY[s] for s in subject],
        example_ids=[
            f"truthfulqa/validation/{i:04d}" if tqa else f"mmlu/test/{s}/{i:04d}"
            for i, s in enumerate(subject)
        ],
        questions=[f"q{i}" for i in range(n)],
    )
    ident = {
        "model": f"synthetic-null-{hidden}-{w_seed}",
        "dataset": dataset,
        "split": "test",
        "dtype": "float32",
        "w_u_sha256": fmt.sha256_bytes(w_u),
    }
    return synthetic_store(
        path,
        meta=meta,
        n_depth=depth,
        w_u=w_u,
        norm=spec,
        answer_ids=ids,
        resid=resid,
        identity=ident,
        provenance={"template": {"name": "t"}},
        finalize={"finished": "test"},
    )


ENTROPY_NEURON = 7


def capture_store(path, *, n=160, depth=5, hidden=24, vocab=60, neurons=32, seed=0, kind="rmsnorm"):
    """A store with the capture ``mlp_last``: the last block adds ``acts @ w_out``; neuron
    ENTROPY_NEURON writes a large norm along the effective unembedding's most-null direction
    (an "entropy neuron"), the others small random vectors."""
    from analyze.interventions.svd import effective_unembedding, exact_null, svd_of

    rng = np.random.default_rng(seed)
    ids = np.array([3, 4, 5, 6])
    gain = (1 + 0.2 * rng.random(hidden)).astype(np.float32)
    u = planted_direction(hidden, seed=seed + 11)
    if kind == "layernorm":  # a null direction orthogonal to 1 (the norm removes 1 anyway)
        u = u - u.mean()
        u /= np.linalg.norm(u)
    # W_U diag(gain) = W0 (I - u uᵀ) up to 1e-3: u is (nearly) null through the folded gain
    w0 = rng.normal(size=(vocab, hidden))
    w_u = ((w0 - np.outer(w0 @ u, u) * (1 - 1e-3)) / gain).astype(np.float32)
    bias = (0.1 * rng.normal(size=hidden)).astype(np.float32) if kind == "layernorm" else None
    spec = NormSpec(kind, gain, bias, 1e-5)
    _, r = svd_of(effective_unembedding(w_u, spec), null=exact_null(kind, hidden))
    null_dir = r[:, -2] if kind == "layernorm" else r[:, -1]
    w_out = 0.3 * rng.normal(size=(neurons, hidden)) / np.sqrt(hidden)
    w_out[ENTROPY_NEURON] = 6.0 * null_dir
    label = rng.integers(0, 4, n)
    answer = w_u[ids] - w_u[ids].mean(axis=0)
    h = np.empty((n, depth, hidden))
    h[:, 0] = rng.normal(size=(n, hidden))
    for layer in range(1, depth):
        h[:, layer] = h[:, layer - 1] + 0.5 * rng.normal(size=(n, hidden)) + 0.4 * answer[label]
    acts = np.maximum(rng.normal(size=(n, neurons)), 0) * 2
    acts[:, ENTROPY_NEURON] = 1.0 + rng.random(n) * 3
    h[:, -1] += acts @ w_out
    w_out = w_out.astype(np.float32)
    subject = [SUBJECTS[i % len(SUBJECTS)] for i in range(n)]
    meta = example_meta(
        label,
        subject,
        categories=[CATEGORY[s] for s in subject],
        example_ids=[f"mmlu/test/{s}/{i:04d}" for i, s in enumerate(subject)],
    )
    return synthetic_store(
        path,
        meta=meta,
        n_depth=depth,
        w_u=w_u,
        norm=spec,
        answer_ids=ids,
        resid=h.astype(np.float32),
        identity=identity(f"synthetic-capture-{hidden}-{seed}", w_u),
        provenance={"template": {"name": "t"}},
        block=128,
        finalize={"finished": "test"},
        mlp_last=fmt.MlpLastCapture(w_out, {"block": depth - 2, "where": "synthetic"}),
        mlp_acts=acts.astype(np.float32),
    )
