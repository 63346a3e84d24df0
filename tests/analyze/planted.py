"""Stores with planted answer logits: the lens of ``make_store`` gives exactly the logits asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.special import logsumexp

from layercal import format as fmt
from layercal.lens import NormSpec, lens_logits
from layercal.testing import example_meta, synthetic_store

ANSWER_IDS = np.array([10, 20, 30, 40])


SCALE = 8.0  # answer rows of W_U are SCALE * e_k, so a resid with mean square 1 gives z_k


def make_store(
    path: Path,
    logits: np.ndarray,
    label: np.ndarray,
    *,
    subjects: list[str] | None = None,
    d: int = 64,
    vocab: int = 1000,
    blocks: list[int] | None = None,
    seed: int = 0,
    record_entropy: bool = True,
    categories: list[str] | None = None,
    questions: list[str] | None = None,
    choices: list[list[str]] | None = None,
    example_ids: list[str] | None = None,
) -> Path:
    """A real store whose lens gives exactly ``logits`` (n, L, K) on the answer tokens.

    RMSNorm with weight 1 and eps 0 leaves a residual of mean square 1 unchanged, and the answer
    rows of W_U are SCALE * e_k: h = [z / SCALE, noise, filler] with the filler setting the mean
    square to 1 gives lens logits z. The rest of W_U is random. ``blocks``: blocks to write
    (default all, then the store is finalized). ``record_entropy=False``: a store as layercal
    wrote them before ``lens_entropy`` was recorded. ``categories``, ``questions``, ``choices``,
    ``example_ids``: the examples' metadata (defaults: category "c" + the subject's last
    character, question "q", options "0", "1", ...).
    """
    n, n_layers, k = logits.shape
    rng = np.random.default_rng(seed)
    w_u = np.zeros((vocab, d), np.float32)
    w_u[:, k:] = rng.normal(0, 0.7, (vocab, d - k))
    w_u[ANSWER_IDS[:k]] = 0.0
    w_u[ANSWER_IDS[:k], np.arange(k)] = SCALE
    spec = NormSpec("rmsnorm", np.ones(d, np.float32), None, 0.0)
    h = np.zeros((n, n_layers, d))
    h[..., :k] = logits / SCALE
    h[..., k:-1] = rng.normal(0, 0.5, (n, n_layers, d - k - 1))
    h[..., -1] = np.sqrt(d - (h[..., :-1] ** 2).sum(-1))
    h = h.astype(np.float32)
    subjects = subjects or [f"s{i % 3}" for i in range(n)]
    meta = example_meta(
        label,
        subjects,
        categories=categories or ["c" + s[-1] for s in subjects],
        choices=choices or [[str(j) for j in range(k)]] * n,
        questions=questions,
        example_ids=example_ids,
    )
    ident = {"model": "planted", "dataset": "synthetic", "split": "test", "dtype": "float32"}
    return synthetic_store(
        path,
        meta=meta,
        n_depth=n_layers,
        w_u=w_u,
        norm=spec,
        answer_ids=ANSWER_IDS[:k],
        resid=h,
        identity=ident,
        provenance={"template": {"name": "planted"}},
        block=128,
        write=blocks,
        optional_arrays=fmt.OPTIONAL_ACTIVATION_ARRAYS if record_entropy else (),
    )


def random_logits(n: int = 256, n_layers: int = 5, k: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1, (n, n_layers, k)) * np.linspace(0.5, 4, n_layers)[None, :, None]
    return z, rng.integers(0, k, n)


def direct(h: np.ndarray, w_u: np.ndarray, spec: NormSpec, bias=None):
    """lse, entropy and answer mass from the whole-vocabulary logits in one float64 array."""
    full = lens_logits(h, w_u, spec, bias)
    lse = logsumexp(full, axis=-1)
    logp = full - lse[..., None]
    return lse, -(np.exp(logp) * logp).sum(-1), np.exp(logp)
