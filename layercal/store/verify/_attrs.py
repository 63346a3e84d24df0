"""``store verify``: which array of a block changed, when the block's sha256 does not match.

``block_sha256`` covers the activation arrays of a block together, so a mismatch alone does not
say which one changed. The arrays are redundant, though: the lens on ``resid`` reproduces
``lens_logits`` at every layer and ``model_logits`` at the last, and ``lens_lse`` and
``lens_entropy`` (stores written before it was added lack it) are the log-sum-exp and the entropy
of the lens over the whole vocabulary (recomputed when that is cheap enough; an entropy outside
[0, log V] is impossible in any case).
"""

from __future__ import annotations

import numpy as np
import zarr

from layercal.lens import NormSpec, lens_logits

LSE_BUDGET = 3e11  # multiply-adds allowed for recomputing lens_lse of one block (seconds on a CPU)


def lse_entropy(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log-sum-exp and entropy (nats) of softmax over the last axis: (..., V) float64 -> two
    (...) arrays. Overwrites ``z``; holds one more buffer of its size.

    H = sum p (lse - z): every term is >= 0, so nothing cancels (lse - sum p z would)."""
    top = z.max(axis=-1, keepdims=True)
    z -= top
    p = np.exp(z)
    total = p.sum(axis=-1, keepdims=True)
    log_total = np.log(total)  # lse - top
    np.subtract(log_total, z, out=z)  # lse - z >= 0
    p /= total
    return (log_total + top)[..., 0], np.einsum("...v,...v->...", p, z)


def vocab_diffs(
    resid: np.ndarray,
    recorded: dict[str, np.ndarray],
    arrays: dict[str, zarr.Array],
    spec: NormSpec,
) -> dict[str, np.ndarray] | None:
    """|recomputed - recorded| (m, L) of ``lens_lse`` and, when recorded, ``lens_entropy``, from
    the full-vocabulary lens; None when that costs more than :data:`LSE_BUDGET`.
    ``resid``: (m, L, d); ``recorded``: the block's arrays by name, (m, L) each."""
    w = arrays["W_U"]
    m, n_depth, d = resid.shape
    if m * n_depth * d * w.shape[0] > LSE_BUDGET:
        return None
    w_u = np.asarray(w[...], dtype=np.float64)
    bias = np.asarray(arrays["lm_head_bias"][...]) if "lm_head_bias" in arrays else None
    names = [k for k in ("lens_lse", "lens_entropy") if k in recorded]
    out: dict[str, np.ndarray] = {k: np.empty((m, n_depth)) for k in names}
    step = max(1, int(1e7 // (n_depth * w.shape[0])))  # rows per pass: 2 x 80 MB of float64
    for i in range(0, m, step):
        rows = slice(i, i + step)
        lse, entropy = lse_entropy(lens_logits(resid[rows], w_u, spec, bias))
        got = {"lens_lse": lse, "lens_entropy": entropy}
        for k in names:
            out[k][rows] = np.abs(got[k] - recorded[k][rows])
    return out


def entropy_outside(entropy: np.ndarray, vocab: int, tol: float) -> np.ndarray:
    """Where an entropy (nats) lies outside [0, log vocab] by more than ``tol``: a bool mask."""
    return (entropy < -tol) | (entropy > np.log(vocab) + tol)


def _where(mask: np.ndarray, start: int) -> str:
    """``mask`` (m, L) or (m,) -> 'example 130 layer 2' for its first True entry."""
    first = np.argwhere(mask)[0]
    layer = f" layer {first[1]}" if len(first) > 1 else ""
    return f"example {start + int(first[0])}{layer}, {int(mask.sum())} values"


def attribute(
    blk: dict[str, np.ndarray],
    lens: tuple[np.ndarray, np.ndarray | None, NormSpec],
    tol: float,
    arrays: dict[str, zarr.Array],
    start: int = 0,
) -> str:
    """A sentence naming the changed array of a block whose sha256 does not match (best effort).

    ``blk``: the block's decoded activation arrays (first example ``start``); ``lens``: answer
    rows of W_U, their bias, the final norm; ``tol``: the self-check tolerance, also used for
    the log-sum-exp and the entropy. An array is named when the arrays recomputed from it
    disagree with it; ``resid`` when two records computed from it independently both disagree
    with it at the same place."""
    w_ans, b_ans, spec = lens
    z = lens_logits(blk["resid"], w_ans, spec, b_ans)
    bad_lens = np.abs(z - blk["lens_logits"]).max(axis=-1) > tol  # (m, L)
    bad_model = np.abs(z[:, -1] - blk["model_logits"]).max(axis=-1) > tol  # (m,)
    vocab = vocab_diffs(blk["resid"], blk, arrays, spec)
    none = np.zeros_like(bad_lens)
    bad_lse = none if vocab is None else vocab["lens_lse"] > tol
    bad_ent = none if vocab is None or "lens_entropy" not in vocab else vocab["lens_entropy"] > tol
    both = (bad_lens & (bad_lse | bad_ent)) | (
        bad_lens & bad_model[:, None] & (np.arange(z.shape[1]) == z.shape[1] - 1)
    )
    if both.any():
        return (
            "resid is the changed array (lens, lens_lse, lens_entropy or model logits disagree "
            f"at {_where(both, start)})"
        )
    named = [
        (name, mask)
        for name, mask in (
            ("lens_logits", bad_lens),
            ("model_logits", bad_model),
            ("lens_lse", bad_lse),
            ("lens_entropy", bad_ent),
        )
        if mask.any()
    ]
    if len(named) == 1 and (named[0][0] != "lens_logits" or vocab is not None):
        name, mask = named[0]
        return f"{name} is the changed array (differs from its recomputation from resid at {_where(mask, start)})"
    if named:
        parts = "; ".join(f"{n} at {_where(m, start)}" for n, m in named)
        return f"resid or {', '.join(n for n, _ in named)} changed (disagreement: {parts})"
    if float((blk["lens_logits"].max(axis=-1) - blk["lens_lse"]).max()) > tol:
        return "lens_lse is the changed array (below an answer logit, impossible for a log-sum-exp)"
    if "lens_entropy" in blk:
        outside = entropy_outside(blk["lens_entropy"], arrays["W_U"].shape[0], tol)
        if outside.any():
            return (
                "lens_entropy is the changed array (outside [0, log vocab], impossible for an "
                f"entropy, at {_where(outside, start)})"
            )
    full = [k for k in ("lens_lse", "lens_entropy") if k in blk]
    checked = "resid, lens_logits, model_logits" + ("" if vocab is None else f", {', '.join(full)}")
    return (
        f"{checked} agree within the lens tolerance, so the change is too small to show in the "
        "lens"
        + (f", or in {' or '.join(full)} (too costly to recompute here)" if vocab is None else "")
        + (", or in mlp_last (nothing in the store recomputes it)" if "mlp_last" in blk else "")
        + ", or in this block's block_sha256 entry"
    )
