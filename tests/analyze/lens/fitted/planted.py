"""Stores with a planted linear map between depths, for the fitted lenses' tests.

Depth 0 holds random residuals (with a few coordinates much larger than the rest, as real
residual streams have); every later depth is the previous one through a fixed near-identity
affine map, so the last depth is an exact affine function of every earlier one and the shortcut
has a known answer. W_U is random with the answer tokens among its rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from layercal.lens import NormSpec
from layercal.testing import example_meta, synthetic_store

ANSWER_IDS = np.array([3, 7, 11, 19])


def planted_maps(n_depth: int, d: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(M_l, c_l) for l = 0..n_depth-2: h[l+1] = h[l] M_l + c_l."""
    rng = np.random.default_rng([seed, 1])
    return [
        (np.eye(d) + rng.normal(0, 0.35 / np.sqrt(d), (d, d)), rng.normal(0, 0.3, d))
        for _ in range(n_depth - 1)
    ]


def map_to_last(maps: list[tuple[np.ndarray, np.ndarray]], layer: int) -> tuple[np.ndarray, ...]:
    """(A, c) with h[last] = h[layer] A + c."""
    d = maps[0][0].shape[0]
    a, c = np.eye(d), np.zeros(d)
    for m, b in maps[layer:]:
        a, c = a @ m, c @ m + b
    return a, c


def residuals(n: int, n_depth: int, d: int, seed: int = 0, noise: float = 0.0) -> np.ndarray:
    """(n, n_depth, d) float32 following :func:`planted_maps` (plus optional noise per depth)."""
    rng = np.random.default_rng([seed, 2])
    h = np.empty((n, n_depth, d))
    h[:, 0] = rng.normal(0, 1, (n, d)) * np.where(np.arange(d) < 2, 8.0, 1.0)
    for layer, (m, c) in enumerate(planted_maps(n_depth, d, seed)):
        h[:, layer + 1] = h[:, layer] @ m + c + noise * rng.normal(0, 1, (n, d))
    return h.astype(np.float32)


def make_store(
    path: Path,
    *,
    n: int = 240,
    n_depth: int = 4,
    d: int = 16,
    vocab: int = 200,
    seed: int = 0,
    noise: float = 0.0,
    resid: np.ndarray | None = None,
    subjects: list[str] | None = None,
    dataset: str = "synthetic",
    example_ids: list[str] | None = None,
    label: np.ndarray | None = None,
    w_u_seed: int | None = None,
) -> Path:
    """A real store over :func:`residuals` (or ``resid``), RMSNorm with a non-trivial gain;
    labels random unless given; W_U and the norm from ``w_u_seed`` (default ``seed``)."""
    rng = np.random.default_rng([seed if w_u_seed is None else w_u_seed, 3])
    h = residuals(n, n_depth, d, seed, noise) if resid is None else resid
    n, n_depth, d = h.shape
    w_u = rng.normal(0, 1.0, (vocab, d)).astype(np.float32)
    spec = NormSpec("rmsnorm", (1 + 0.2 * rng.normal(size=d)).astype(np.float32), None, 1e-6)
    subjects = subjects or [f"s{i % 3}" for i in range(n)]
    label = rng.integers(0, 4, n) if label is None else label
    meta = example_meta(label, subjects, example_ids=example_ids, choices=[list("abcd")] * n)
    ident = {"model": "planted-lens", "dataset": dataset, "split": "test", "dtype": "float32"}
    from layercal import format as fmt

    ident["w_u_sha256"] = fmt.sha256_bytes(w_u)
    return synthetic_store(
        path,
        meta=meta,
        n_depth=n_depth,
        w_u=w_u,
        norm=spec,
        answer_ids=ANSWER_IDS,
        resid=h,
        identity=ident,
        provenance={"template": {"name": "planted"}},
        block=128,
    )
