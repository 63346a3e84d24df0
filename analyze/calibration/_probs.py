"""Answer-option probabilities and per-example scores computed from them.

Shapes: ``...`` is any leading batch (e.g. layers L), n examples, K answer options. Absent options
(``choice_mask`` False) get probability exactly 0 and contribute nothing to any score.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analyze.calibration._checks import as_label, as_mask, as_scores

NLL_CLIP = 1e-12  # smallest probability nll takes the log of, so a confident miss is finite


def masked_logits(
    logits: NDArray[np.float64], mask: NDArray[np.bool_] | None
) -> NDArray[np.float64]:
    """Logits (..., n, K) with -inf at absent options; present ones must be finite."""
    present = logits if mask is None else logits[..., mask]
    if not np.isfinite(present).all():
        raise ValueError("logits of present answer options must be finite (no nan or inf)")
    return logits if mask is None else np.where(mask, logits, -np.inf)


def _shifted(
    logits: NDArray[np.float64], mask: NDArray[np.bool_] | None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Max-shifted logits (-inf where absent) and their exp, both (..., n, K)."""
    z = masked_logits(logits, mask)
    z = z - z.max(axis=-1, keepdims=True)
    return z, np.exp(z)


def log_softmax(logits: ArrayLike, choice_mask: ArrayLike | None = None) -> NDArray[np.float64]:
    """Log-probabilities over the present options, (..., n, K) float64; -inf where absent."""
    z = as_scores(logits, "logits")
    mask = as_mask(choice_mask, *z.shape[-2:])
    shifted, e = _shifted(z, mask)
    return shifted - np.log(e.sum(axis=-1, keepdims=True))


def answer_probs(logits: ArrayLike, choice_mask: ArrayLike | None = None) -> NDArray[np.float64]:
    """Softmax over the K answer logits, masked options 0.

    logits: (..., n, K); choice_mask: (n, K) bool, False = option absent (broadcast over ``...``).
    Returns (..., n, K) float64 rows summing to 1. The max is subtracted first, so large logits do
    not overflow; logits of absent options are ignored (they may be anything, even nan).
    """
    z = as_scores(logits, "logits")
    mask = as_mask(choice_mask, *z.shape[-2:])
    _, e = _shifted(z, mask)
    return e / e.sum(axis=-1, keepdims=True)


def confidence_and_correct(
    probs: ArrayLike, label: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Confidence (max probability) and correctness of the argmax prediction.

    probs: (..., n, K); label: (n,) int. Returns conf (..., n) float64 and correct (..., n) bool,
    where the prediction is the argmax with ties going to the lowest option index.
    """
    p = as_scores(probs, "probs")
    lab = as_label(label, *p.shape[-2:])
    return p.max(axis=-1), p.argmax(axis=-1) == lab


def entropy(probs: ArrayLike) -> NDArray[np.float64]:
    """Entropy in nats over the answer options, (..., n) from probs (..., n, K); 0 log 0 = 0."""
    p = as_scores(probs, "probs")
    pos = p > 0
    terms = np.where(pos, p * np.log(np.where(pos, p, 1.0)), 0.0)
    return -terms.sum(axis=-1)


def kl_divergence(p: ArrayLike, q: ArrayLike) -> NDArray[np.float64]:
    """KL(p || q) in nats per example over the answer options.

    p, q: broadcastable (..., n, K) probabilities. Options with p = 0 (absent ones included)
    contribute 0; an option with p > 0 and q = 0 makes the divergence inf.
    """
    pa, qa = as_scores(p, "p"), as_scores(q, "q")
    if pa.shape[-1] != qa.shape[-1]:
        raise ValueError(f"p and q need the same K; got shapes {pa.shape} and {qa.shape}")
    pa, qa = np.broadcast_arrays(pa, qa)
    pos = pa > 0
    with np.errstate(divide="ignore"):  # q = 0 where p > 0: log q = -inf, KL = inf
        log_ratio = np.log(np.where(pos, pa, 1.0)) - np.log(np.where(pos, qa, 1.0))
    return np.where(pos, pa * log_ratio, 0.0).sum(axis=-1)


def kl_from_log(logp: NDArray[np.float64], logq: NDArray[np.float64]) -> NDArray[np.float64]:
    """KL(p || q) per example from log-probabilities (-inf where absent); no underflow to inf."""
    present = np.isfinite(logp)
    safe_p = np.where(present, logp, 0.0)
    safe_q = np.where(present, logq, 0.0)
    return np.where(present, np.exp(safe_p) * (safe_p - safe_q), 0.0).sum(axis=-1)


def brier_terms(
    probs: NDArray[np.float64], label: NDArray[np.intp], mask: NDArray[np.bool_] | None
) -> NDArray[np.float64]:
    """Per-example multi-class Brier score sum_k (p_k - y_k)^2 over present options, (..., n)."""
    n, k = probs.shape[-2:]
    diff = probs - (np.arange(k) == label[:, None])
    sq = diff * diff
    if mask is not None:
        sq = np.where(mask, sq, 0.0)
    return sq.sum(axis=-1)


def nll_terms(probs: NDArray[np.float64], label: NDArray[np.intp]) -> NDArray[np.float64]:
    """Per-example -log p_label with p clipped at NLL_CLIP, (..., n)."""
    n = probs.shape[-2]
    p_label = probs[..., np.arange(n), label]
    return -np.log(np.maximum(p_label, NLL_CLIP))


# rows of ``per_example_terms``: every per-layer metric but the binned ones is a mean of one row
TERMS = ("correct", "conf", "brier", "nll", "entropy", "kl_to_last", "flip")


def per_example_terms(
    logits_lk: NDArray[np.float64], label: NDArray[np.intp], mask: NDArray[np.bool_] | None
) -> NDArray[np.float64]:
    """Every per-example quantity of the per-layer metrics, (len(TERMS), L, n) float64.

    ``logits_lk``: (L, n, K), the last layer being the reference of kl_to_last and flip;
    ``label``: (n,); ``mask``: (n, K) or None. Rows (``TERMS``): correct (argmax == label),
    conf (max probability), brier, nll, entropy, KL(p_last || p_layer), flip (argmax differs
    from the last layer's). Additive over examples, so it can be computed chunk by chunk.
    """
    log_p = log_softmax(logits_lk, mask)
    probs = answer_probs(logits_lk, mask)
    pred = probs.argmax(axis=-1)
    return np.stack(
        [
            (pred == label).astype(np.float64),
            probs.max(axis=-1),
            brier_terms(probs, label, mask),
            nll_terms(probs, label),
            entropy(probs),
            kl_from_log(log_p[-1], log_p),
            (pred != pred[-1]).astype(np.float64),
        ]
    )
