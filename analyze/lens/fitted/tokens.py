"""The token set a fitted lens is scored on, and the final distribution on it.

A lens is fitted and diagnosed against the model's final distribution (the logit lens at the last
depth, which extraction checks against the model's own logits). Its full-vocabulary KL at every
depth would cost 2 V d flops per example and depth for every evaluation; what a store records
(``lens_lse``, ``lens_entropy``) gives the lens's own normaliser and entropy at T = 1 only, not
the cross term sum_v p_final(v) z_l(v), so no KL can be computed from it. Lenses are therefore
scored on a token set per fold: the K answer-option tokens plus the ``top_k`` other tokens of
largest mean final probability over the fold's training examples (one streaming pass over W_U at
the last depth), both distributions renormalised over the set. The final argmax over the whole
vocabulary comes from the same pass, so top-1 agreement is measured against the real final
answer token (a lens can only agree when that token is in the set).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from analyze.lens.answer import AnswerLens
from analyze.lens.store import norm_spec_of
from analyze.lens.vocab import VOCAB_CHUNK
from layercal.lens import final_norm

DEFAULT_TOP_K = 256
ROW_BATCH = 512  # examples per matrix product of the pass (ROW_BATCH x VOCAB_CHUNK logits)
TOKEN_SET_RULE = (
    "per fold: the K answer-option tokens, then the top_k other tokens of largest mean final "
    "probability (the logit lens at the last depth, full vocabulary) over the fold's training "
    "examples; KL and agreement are computed on that set, both distributions renormalised"
)


@dataclass(frozen=True)
class TokenSets:
    """``ids`` (F, K + top_k) token ids of each fold's set (the answer tokens first);
    ``final_top1`` (n,) the final full-vocabulary argmax of every example; ``final_lse`` (n,)
    the final full-vocabulary log-sum-exp (for the share of the final mass inside a set)."""

    ids: NDArray[np.int64]
    final_top1: NDArray[np.int64]
    final_lse: NDArray[np.float64]
    top_k: int


def readout(ds: xr.Dataset, ids: NDArray[np.int64]) -> AnswerLens:
    """The store's final norm and unembedding restricted to the tokens ``ids`` (S,): its
    ``logits(h)`` maps (..., d) residuals to (..., S) logits (the reference formula)."""
    order = np.argsort(ids)
    w = np.empty((ids.size, int(ds.sizes["hidden"])), np.float32)
    w[order] = np.asarray(ds["W_U"].isel(vocab=ids[order]).values, np.float32)
    b = None
    if "lm_head_bias" in ds:
        b = np.empty(ids.size, np.float32)
        b[order] = np.asarray(ds["lm_head_bias"].isel(vocab=ids[order]).values, np.float32)
    return AnswerLens(norm_spec_of(ds), w, b)


def readouts(ds: xr.Dataset, ids: NDArray[np.int64]) -> list[AnswerLens]:
    """:func:`readout` of every row of ``ids`` (F, S), reading the rows of W_U once."""
    union = np.unique(ids)
    whole = readout(ds, union)
    out = []
    for row in ids:
        pos = np.searchsorted(union, row)
        b = None if whole.b is None else whole.b[pos]
        out.append(AnswerLens(whole.spec, whole.w[pos], b))
    return out


def token_sets(
    ds: xr.Dataset,
    h_last: NDArray[np.floating[Any]],
    folds: NDArray[np.int64],
    top_k: int = DEFAULT_TOP_K,
) -> TokenSets:
    """One streaming pass over W_U at the last depth: the token set of every fold.

    ``h_last``: (n, d) last-depth residuals of the store's examples; ``folds``: (n,) their folds.
    The mean final probabilities that rank the tokens use the log-sum-exp recorded at extraction
    (``lens_lse`` at the last depth: only the ranking depends on it); the exact one is
    accumulated in the same pass. Memory: ROW_BATCH x VOCAB_CHUNK logits and one block of W_U.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0, got {top_k!r}")
    spec = norm_spec_of(ds)
    x = final_norm(h_last, spec).astype(np.float32)
    n, n_folds, vocab = x.shape[0], int(folds.max()) + 1, int(ds.sizes["vocab"])
    onehot = (folds[None, :] == np.arange(n_folds)[:, None]).astype(np.float64)
    recorded = np.asarray(ds["lens_lse"].isel(layer=-1).values, np.float64)
    mass = np.zeros((n_folds, vocab))  # per fold, sum over its examples of p_final
    best, top1 = np.full(n, -np.inf), np.zeros(n, np.int64)
    big_m, big_s = np.full(n, -np.inf), np.zeros(n)  # streaming log-sum-exp
    for lo, rows, z in _logit_blocks(ds, x, spec.softcap):
        mass[:, lo : lo + z.shape[1]] += onehot[:, rows] @ np.exp(z - recorded[rows, None])
        arg = z.argmax(axis=1)
        val = z[np.arange(z.shape[0]), arg]
        better = val > best[rows]
        best[rows] = np.where(better, val, best[rows])
        top1[rows] = np.where(better, lo + arg, top1[rows])
        new = np.maximum(big_m[rows], val)
        big_s[rows] = big_s[rows] * np.exp(big_m[rows] - new) + np.exp(z - new[:, None]).sum(1)
        big_m[rows] = new
    answers = np.asarray(ds["answer_token_ids"].values, np.int64)
    k = min(top_k, vocab - answers.size)
    ids = np.empty((n_folds, answers.size + k), np.int64)
    for f in range(n_folds):  # from the fold's training examples (added, never subtracted)
        train = mass[[g for g in range(n_folds) if g != f]].sum(axis=0)
        train[answers] = -np.inf
        top = np.argpartition(-train, k - 1)[:k] if k else np.zeros(0, np.int64)
        top = top[np.argsort(-train[top], kind="stable")]
        ids[f] = np.concatenate([answers, top])
    return TokenSets(ids, top1, big_m + np.log(big_s), k)


def _logit_blocks(ds: xr.Dataset, x: NDArray[np.float32], softcap: float | None) -> Any:
    """(first vocabulary id, row slice, (rows, c) float64 logits) per block of W_U rows and
    ROW_BATCH examples; each block of W_U is read once."""
    vocab = int(ds.sizes["vocab"])
    has_bias = "lm_head_bias" in ds
    for lo in range(0, vocab, VOCAB_CHUNK):
        hi = min(vocab, lo + VOCAB_CHUNK)
        w = np.asarray(ds["W_U"].isel(vocab=slice(lo, hi)).values, np.float32)
        b = np.asarray(ds["lm_head_bias"].isel(vocab=slice(lo, hi)).values) if has_bias else None
        for r in range(0, x.shape[0], ROW_BATCH):
            rows = slice(r, min(x.shape[0], r + ROW_BATCH))
            z = (x[rows] @ w.T).astype(np.float64)
            if b is not None:
                z += b
            if softcap is not None:
                z = softcap * np.tanh(z / softcap)
            yield lo, rows, z


def set_log_probs(z: NDArray[np.float64]) -> NDArray[np.float64]:
    """Log-softmax over the last axis (the token set): (..., S) -> (..., S)."""
    top = z.max(axis=-1, keepdims=True)
    return z - top - np.log(np.exp(z - top).sum(axis=-1, keepdims=True))
