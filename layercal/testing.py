"""Synthetic activation stores without a model, for tests and benchmarks.

:func:`synthetic_store` writes a real store through :mod:`layercal.format` from residuals and an
unembedding: the activation arrays are what extraction records (:func:`recorded_block`: the lens
on the answer tokens at every depth, the model's logits at the last, the log-sum-exp and the
entropy over the whole vocabulary), so every reader and check treats it as an extracted store.
Large stores are written block by block from a function (``blocks=``), never held whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from layercal import format as fmt
from layercal.lens import NormSpec, lens_logits

# (block index, its slice of examples) -> the block's activation arrays
BlockFn = Callable[[int, slice], Mapping[str, NDArray[Any]]]


def recorded_block(
    resid: NDArray[Any], full: NDArray[Any], answer_ids: NDArray[Any]
) -> dict[str, NDArray[Any]]:
    """A block's activation arrays as extraction records them: ``resid`` (m, L, d) and its
    full-vocabulary lens logits ``full`` (m, L, V) float64 give the answer logits, the model's
    (the last depth), the log-sum-exp and the entropy over the vocabulary."""
    top = full.max(-1)
    lse = top + np.log(np.exp(full - top[..., None]).sum(-1))
    z = full[..., answer_ids]
    return {
        "resid": resid,
        "model_logits": z[:, -1],
        "lens_logits": z,
        "lens_lse": lse,
        "lens_entropy": (np.exp(full - lse[..., None]) * (lse[..., None] - full)).sum(-1),
    }


def lens_block(
    resid: NDArray[Any],
    w_u: NDArray[Any],
    norm: NormSpec,
    answer_ids: NDArray[Any],
    bias: NDArray[Any] | None = None,
) -> dict[str, NDArray[Any]]:
    """:func:`recorded_block` of ``resid`` (m, L, d) with the reference lens (float64) over the
    whole of ``w_u`` (V, d): for small vocabularies."""
    return recorded_block(resid, lens_logits(resid, w_u, norm, bias), np.asarray(answer_ids))


def example_meta(
    label: Sequence[int] | NDArray[Any],
    subjects: Sequence[str],
    *,
    categories: Sequence[str] | None = None,
    example_ids: Sequence[str] | None = None,
    questions: Sequence[str] | None = None,
    choices: Sequence[Sequence[str]] | None = None,
    n_tokens: Sequence[int] | NDArray[Any] | int = 10,
    n_choices: int = 4,
) -> fmt.ExampleMeta:
    """Per-example metadata of n = len(label) examples; defaults: ids ``ex/00000``, category =
    subject, question ``q``, options "a", "b", ... (``n_choices`` of them), 10 tokens."""
    n = len(label)
    tokens = np.full(n, n_tokens) if isinstance(n_tokens, int) else np.asarray(n_tokens)
    return fmt.ExampleMeta(
        example_id=list(example_ids or [f"ex/{i:05d}" for i in range(n)]),
        subject=list(subjects),
        category=list(categories or subjects),
        question=list(questions or ["q"] * n),
        choices=[list(c) for c in (choices or [list("abcdefgh"[:n_choices])] * n)],
        label=np.asarray(label),
        n_tokens=tokens,
    )


def mmlu_shaped_meta(label: Sequence[int] | NDArray[Any], n_tokens: int = 100) -> fmt.ExampleMeta:
    """Metadata shaped like MMLU's for n = len(label) examples: 57 subjects taken in turn, in the
    four categories; ids ``synthetic/test/<i>`` (the benchmarks' full-size stores)."""
    n = len(label)
    categories = ("humanities", "stem", "social_sciences", "other")
    return example_meta(
        label,
        [f"subject_{i % 57:02d}" for i in range(n)],
        categories=[categories[i % 57 % 4] for i in range(n)],
        example_ids=[f"synthetic/test/{i}" for i in range(n)],
        n_tokens=n_tokens,
    )


def synthetic_store(
    path: str | Path,
    *,
    meta: fmt.ExampleMeta,
    n_depth: int,
    w_u: NDArray[Any],
    norm: NormSpec,
    answer_ids: Sequence[int] | NDArray[Any],
    resid: NDArray[Any] | None = None,
    blocks: BlockFn | None = None,
    lm_head_bias: NDArray[Any] | None = None,
    identity: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
    block: int = fmt.DEFAULT_BLOCK,
    write: Iterable[int] | None = None,
    finalize: Mapping[str, Any] | None = None,
    optional_arrays: Iterable[str] = fmt.OPTIONAL_ACTIVATION_ARRAYS,
    mlp_last: fmt.MlpLastCapture | None = None,
    mlp_acts: NDArray[Any] | None = None,
) -> Path:
    """Create the store at ``path`` and write its blocks; returns ``path``.

    The activation arrays come from ``resid`` (n, L, d), through :func:`lens_block`, or from
    ``blocks(b, slice)`` for each block written (for large stores, or records made on purpose).
    ``identity`` (default: a float32 model named ``synthetic``, its W_U sha256) and
    ``provenance`` (default: a template named ``synthetic``) go into the store's attributes, or
    ``attrs`` whole. ``write``: the blocks to write (default all); the store is finalized
    (status ``complete``, with ``finalize`` as extra status) when all are written.
    ``optional_arrays=()``: a store as layercal wrote them before ``lens_entropy``.
    ``mlp_last``: a store with the capture ``mlp_last`` (its ``w_out_last`` and attributes);
    its activations come from ``mlp_acts`` (n, neurons) with ``resid``, or from ``blocks``.
    """
    path = Path(path)
    w = np.asarray(w_u, np.float32)
    ids = np.asarray(answer_ids)
    n, d, k = len(meta.label), w.shape[1], max(len(c) for c in meta.choices)
    if attrs is None:
        ident = {"model": "synthetic", "dataset": "synthetic", "split": "test", "dtype": "float32"}
        ident["w_u_sha256"] = fmt.sha256_bytes(w)
        attrs = {
            "identity": dict(identity if identity is not None else ident),
            "provenance": dict(
                provenance if provenance is not None else {"template": {"name": "synthetic"}}
            ),
        }
    layout = fmt.Layout(n, n_depth, d, w.shape[0], k, block)
    g = fmt.create_store(
        path,
        layout,
        meta,
        w_u=w,
        lm_head_bias=lm_head_bias,
        norm=norm,
        answer_token_ids=ids,
        attrs=attrs,
        optional_arrays=optional_arrays,
        mlp_last=mlp_last,
    )
    todo = sorted(range(layout.n_blocks) if write is None else write)
    if blocks is None:
        h = resid
        if h is None and todo:
            raise ValueError("synthetic_store needs resid or blocks to write blocks")

        def blocks(b: int, sl: slice) -> Mapping[str, NDArray[Any]]:
            assert h is not None
            out = lens_block(h[sl], w, norm, ids, lm_head_bias)
            if mlp_acts is not None:
                out["mlp_last"] = np.asarray(mlp_acts)[sl]
            return out

    for b in todo:
        sl = layout.block_slice(b)
        fmt.write_block(g, b, blocks(b, sl))
    if todo == list(range(layout.n_blocks)):
        fmt.finalize(path, dict(finalize or {}))
    return path
