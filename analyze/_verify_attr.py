"""``store verify``: which array of a block changed, when the block's sha256 does not match.

``block_sha256`` covers the four activation arrays of a block together, so a mismatch alone does
not say which one changed. The arrays are redundant, though: the lens on ``resid`` reproduces
``lens_logits`` at every layer and ``model_logits`` at the last, and ``lens_lse`` is the
log-sum-exp of the lens over the whole vocabulary (recomputed when that is cheap enough).
"""

from __future__ import annotations

import numpy as np
import zarr

from layercal.lens import NormSpec, lens_logits

LSE_BUDGET = 3e11  # multiply-adds allowed for recomputing lens_lse of one block (seconds on a CPU)


def lse_diff(
    resid: np.ndarray, recorded: np.ndarray, arrays: dict[str, zarr.Array], spec: NormSpec
) -> np.ndarray | None:
    """|log-sum-exp of the full-vocabulary lens - recorded lens_lse|, (m, L), or None when that
    costs more than :data:`LSE_BUDGET`. ``resid``: (m, L, d); ``recorded``: (m, L)."""
    w = arrays["W_U"]
    m, n_depth, d = resid.shape
    if m * n_depth * d * w.shape[0] > LSE_BUDGET:
        return None
    w_u = np.asarray(w[...], dtype=np.float64)
    bias = np.asarray(arrays["lm_head_bias"][...]) if "lm_head_bias" in arrays else None
    out = np.empty((m, n_depth))
    step = max(1, int(2e7 // (n_depth * w.shape[0])))  # rows per pass: ~160 MB of float64 logits
    for i in range(0, m, step):
        z = lens_logits(resid[i : i + step], w_u, spec, bias)
        top = z.max(axis=-1, keepdims=True)
        lse = np.log(np.exp(z - top).sum(axis=-1)) + top[..., 0]
        out[i : i + step] = np.abs(lse - recorded[i : i + step])
    return out


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
    rows of W_U, their bias, the final norm; ``tol``: the self-check tolerance. An array is
    named when the arrays recomputed from it disagree with it; ``resid`` when two records
    computed from it independently both disagree with it at the same place."""
    w_ans, b_ans, spec = lens
    z = lens_logits(blk["resid"], w_ans, spec, b_ans)
    bad_lens = np.abs(z - blk["lens_logits"]).max(axis=-1) > tol  # (m, L)
    bad_model = np.abs(z[:, -1] - blk["model_logits"]).max(axis=-1) > tol  # (m,)
    lse = lse_diff(blk["resid"], blk["lens_lse"], arrays, spec)
    bad_lse = np.zeros_like(bad_lens) if lse is None else lse > tol
    both = (bad_lens & bad_lse) | (
        bad_lens & bad_model[:, None] & (np.arange(z.shape[1]) == z.shape[1] - 1)
    )
    if both.any():
        return f"resid is the changed array (lens, lens_lse or model logits disagree at {_where(both, start)})"
    named = [
        (name, mask)
        for name, mask in (
            ("lens_logits", bad_lens),
            ("model_logits", bad_model),
            ("lens_lse", bad_lse),
        )
        if mask.any()
    ]
    if len(named) == 1 and (named[0][0] != "lens_logits" or lse is not None):
        name, mask = named[0]
        return f"{name} is the changed array (differs from its recomputation from resid at {_where(mask, start)})"
    if named:
        parts = "; ".join(f"{n} at {_where(m, start)}" for n, m in named)
        return f"resid or {', '.join(n for n, _ in named)} changed (disagreement: {parts})"
    if float((blk["lens_logits"].max(axis=-1) - blk["lens_lse"]).max()) > tol:
        return "lens_lse is the changed array (below an answer logit, impossible for a log-sum-exp)"
    checked = "resid, lens_logits, model_logits" + ("" if lse is None else " and lens_lse")
    return (
        f"{checked} agree within the lens tolerance, so the change is too small to show in the "
        "lens"
        + (", or in lens_lse (too costly to recompute here)" if lse is None else "")
        + ", or in this block's block_sha256 entry"
    )
