"""The logit lens over the full vocabulary, in one lazy pass over ``resid``.

Per (example, layer) the pass gives the K answer-token logits and, for the examples chosen for
the full-vocabulary computation, the log-sum-exp and the entropy of the softmax over the whole
vocabulary. W_U is applied in blocks of ``VOCAB_CHUNK`` rows with a streaming log-sum-exp (per
block: max m, sum of exp(z - m) and of exp(z - m)(z - m); blocks combine exactly), so memory is
bounded by (rows of one resid chunk) x VOCAB_CHUNK, whatever the store size. Everything comes out
of a single dask graph: ``resid`` is read once.

The full-vocabulary matmul costs 2 * V * d flops per (example, layer) — about 1.7 TFLOP per 1000
SmolLM2 examples over 31 depths — so on a CPU it is done for a seeded sample of examples by
default (``vocab_examples``); the option mass of every example uses the log-sum-exp recorded at
extraction, which the sample cross-checks (``recorded_checks``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.delayed import Delayed
from numpy.typing import NDArray

from analyze.lens.answer import AnswerLens
from layercal.lens import NormSpec, final_norm, recorded_dtype, self_check_tolerance

VOCAB_CHUNK = 8192  # rows of W_U per block of the streaming log-sum-exp
# (example, layer) rows per full-vocabulary task (2 x 2 MiB of logits): blocks of two SmolLM2
# examples start as soon as the chunks holding them are read, so what is left after the last
# read is one small block, not the whole sample
VOCAB_ROWS = 64


def vocab_lse_entropy(
    normed: NDArray[np.floating[Any]],
    w_u: NDArray[np.float32] | Sequence[NDArray[np.float32]],
    bias: NDArray[np.float32] | None = None,
    softcap: float | None = None,
    chunk: int = VOCAB_CHUNK,
    scale: NDArray[np.floating[Any]] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Log-sum-exp and entropy (nats) of softmax(W_U · x + b) over the whole vocabulary.

    ``normed``: (r, d) final-normed residuals; ``w_u``: (V, d), or its consecutive row blocks (a
    list of (V_i, d) arrays, e.g. the chunks of a store's W_U, used without concatenating them);
    ``bias``: (V,) or None; ``softcap``: c for z <- c tanh(z / c); ``scale``: (r,) factors the
    (soft-capped) logits of each row are multiplied by (a temperature lens's 1/T), or None.
    Returns two (r,) float64 arrays. Streams over blocks of at most ``chunk`` vocabulary rows; two (r, chunk) float32
    buffers are all it holds. Logits are float32 (abs error ~1e-5 for logits ~20); the per-block
    sums and their combination are float64.
    """
    x = np.ascontiguousarray(normed, dtype=np.float32)
    r = x.shape[0]
    row_scale = None if scale is None else np.asarray(scale, np.float32).reshape(r, 1)
    # one (V, d) array-like (numpy, zarr, xarray), or a list of its row blocks
    parts: list[Any] = [w_u] if getattr(w_u, "ndim", None) == 2 else list(w_u)
    blocks = [p[lo : lo + chunk] for p in parts for lo in range(0, p.shape[0], chunk)]
    z_buf = np.empty((r, max(b.shape[0] for b in blocks)), np.float32)
    e_buf = np.empty_like(z_buf)
    big_m = big_s = big_t = np.zeros(r)  # running max M, sum exp(z - M), sum exp(z - M)(z - M)
    lo = 0
    for i, w_c in enumerate(blocks):
        z, e = z_buf[:, : w_c.shape[0]], e_buf[:, : w_c.shape[0]]
        np.matmul(x, np.asarray(w_c, np.float32).T, out=z)
        if bias is not None:
            z += bias[lo : lo + w_c.shape[0]]
        lo += w_c.shape[0]
        if softcap is not None:
            np.tanh(z / softcap, out=z)
            z *= softcap
        if row_scale is not None:
            z *= row_scale
        m = z.max(axis=1).astype(np.float64)
        np.subtract(z, m[:, None].astype(np.float32), out=z)
        np.exp(z, out=e)
        s = e.sum(axis=1, dtype=np.float64)
        t = np.einsum("ij,ij->i", e, z).astype(np.float64)
        if i == 0:
            big_m, big_s, big_t = m, s, t
            continue
        new_m = np.maximum(big_m, m)
        a_old, a_new = np.exp(big_m - new_m), np.exp(m - new_m)
        # sum exp(z - M')(z - M') = a (sum exp(z - M)(z - M) + (M - M') sum exp(z - M))
        big_t = a_old * (big_t + big_s * (big_m - new_m)) + a_new * (t + s * (m - new_m))
        big_s = a_old * big_s + a_new * s
        big_m = new_m
    lse = big_m + np.log(big_s)
    return lse, np.log(big_s) - big_t / big_s  # H = lse - E[z] = log S - E[z - M]


def _folded(h: NDArray[np.float32], lens: AnswerLens) -> NDArray[np.float64]:
    """Answer logits of one chunk of resid (a module-level task function: picklable)."""
    return lens.folded(h)


def _normed_rows(
    h: NDArray[np.float32], in_vocab: NDArray[np.bool_], spec: NormSpec
) -> NDArray[np.float32]:
    """Final-normed residuals of the sampled examples of one chunk: (n, l, d) -> (r, l, d)."""
    return final_norm(h[np.asarray(in_vocab, bool)], spec).astype(np.float32)


def _vocab_block(
    x: NDArray[np.float32],
    w_blocks: list[NDArray[np.float32]],
    scale: NDArray[np.float64] | None = None,
    *,
    bias: NDArray[np.float32] | None,
    softcap: float | None,
) -> NDArray[np.float64]:
    """(r, l, d) normed rows -> (r, l, 2): full-vocabulary lse and entropy (of the logits
    times ``scale`` (r, l) when given)."""
    flat = None if scale is None else scale.reshape(-1)
    lse, ent = vocab_lse_entropy(x.reshape(-1, x.shape[-1]), w_blocks, bias, softcap, scale=flat)
    return np.stack([lse, ent], axis=-1).reshape(*x.shape[:2], 2)


def _unembedding(ds: xr.Dataset) -> tuple[list[Delayed], NDArray[np.float32] | None]:
    """The store's W_U as lazy consecutive row blocks (its own vocabulary chunks, read by tasks
    of the pass itself beside the first chunks of resid), and the bias (V,) or None. Every
    vocabulary task gets the same blocks (Delayed values): never one concatenated copy (dask
    would copy a whole W_U for each task)."""
    bias = None
    if "lm_head_bias" in ds:
        bias = np.asarray(ds["lm_head_bias"].values, np.float32)
    w_u = ds["W_U"].data
    if not isinstance(w_u, da.Array):
        w_u = da.from_array(np.asarray(w_u), chunks=(VOCAB_CHUNK, -1))
    w_u = w_u.astype(np.float32).rechunk({1: -1})
    return list(w_u.to_delayed(optimize_graph=False).ravel()), bias


def lens_pass(
    ds: xr.Dataset,
    in_vocab: NDArray[np.bool_],
    lens: AnswerLens | None = None,
    scale: da.Array | None = None,
) -> xr.Dataset:
    """The lazy single pass over ``ds.resid`` (dims example, layer, hidden).

    ``in_vocab``: (n,) bool, examples whose full-vocabulary quantities are computed. Returns a
    lazy Dataset: ``answer_logits`` (example, layer, choice) for every example; ``vocab_lse`` and
    ``vocab_entropy`` (vocab_example, layer) for the sampled ones, ``vocab_example`` holding
    their positions along ``example`` (``full_vocab_arrays`` spreads them to (n, L)).

    ``scale``: (example, layer) factors every logit is multiplied by after the soft-cap (a
    temperature lens's 1/T, :mod:`analyze.lens.fitted`), with the chunks of ``resid``; None: 1.

    Both branches start from the same resid read tasks, so computing the Dataset reads resid
    once. The sampled rows are normed where their chunk is read, then regrouped in order into
    blocks of about VOCAB_ROWS rows: large matrix products, and a block runs as soon as the
    chunks holding its examples are read.
    """
    sample = np.flatnonzero(np.asarray(in_vocab, bool))
    lens = lens or AnswerLens.of(ds)
    resid = ds["resid"].data
    if not isinstance(resid, da.Array):
        resid = da.from_array(resid, chunks=(2048, 1, -1))
    resid = resid.rechunk({2: -1})
    n_layers, k = resid.shape[1], lens.w.shape[0]
    answers = resid.map_blocks(
        _folded,
        chunks=(*resid.chunks[:2], (k,)),
        dtype=np.float64,
        meta=np.empty((0, 0, 0), np.float64),
        lens=lens,
    )
    if scale is not None:
        scale = scale.rechunk(resid.chunks[:2])
        answers = answers * scale[..., None]
    if sample.size:
        stats = _vocab_stats(ds, resid, in_vocab, sample, lens, scale)
    else:
        stats = da.zeros((0, n_layers, 2), chunks=(0, -1, -1))
    dims = ("example", "layer")
    coords = {c: ds[c] for c in ("example", "layer", "choice")}
    return xr.Dataset(
        {
            "answer_logits": ((*dims, "choice"), answers),
            "vocab_lse": (("vocab_example", "layer"), stats[..., 0]),
            "vocab_entropy": (("vocab_example", "layer"), stats[..., 1]),
        },
        coords={**coords, "vocab_example": sample},
    )


def _vocab_stats(
    ds: xr.Dataset,
    resid: da.Array,
    in_vocab: NDArray[np.bool_],
    sample: NDArray[np.intp],
    lens: AnswerLens,
    scale: da.Array | None,
) -> da.Array:
    """(sampled examples, layer, 2): the full-vocabulary lse and entropy of the sampled rows,
    normed where their chunk is read and regrouped into blocks of about VOCAB_ROWS rows."""
    n_layers = resid.shape[1]
    mask = da.from_array(np.asarray(in_vocab, bool), chunks=(resid.chunks[0],))
    bounds = np.cumsum((0, *resid.chunks[0]))
    counts = tuple(int(np.asarray(in_vocab[a:b]).sum()) for a, b in zip(bounds, bounds[1:]))
    normed = da.blockwise(
        _normed_rows,
        "eld",
        resid,
        "eld",
        mask,
        "e",
        adjust_chunks={"e": counts},
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
        spec=lens.spec,
    )
    normed = normed.rechunk({0: max(1, VOCAB_ROWS // n_layers), 1: -1})
    w_blocks, bias = _unembedding(ds)
    extra: list[Any] = []
    if scale is not None:
        extra = [scale[sample].rechunk(normed.chunks[:2]), "el"]
    stats = da.blockwise(
        _vocab_block,
        "elc",
        normed,
        "eld",
        w_blocks,
        None,
        *extra,
        new_axes={"c": 2},
        concatenate=True,
        dtype=np.float64,
        meta=np.empty((0, 0, 0), np.float64),
        bias=bias,
        softcap=lens.spec.softcap,
    )
    return stats


def full_vocab_arrays(out: xr.Dataset) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Full-vocab lse and entropy of a computed ``lens_pass`` as (n, L), nan where not sampled."""
    n, n_layers = out.sizes["example"], out.sizes["layer"]
    lse, ent = np.full((n, n_layers), np.nan), np.full((n, n_layers), np.nan)
    rows = np.asarray(out["vocab_example"].values, np.intp)
    lse[rows] = out["vocab_lse"].values
    ent[rows] = out["vocab_entropy"].values
    return lse, ent


def option_mass(
    answer_logits: NDArray[np.float64], lse: NDArray[np.float64], choice_mask: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """Full-vocabulary probability of the present answer tokens, summed.

    ``answer_logits``: (n, L, K); ``lse``: (n, L) log-sum-exp over the vocabulary;
    ``choice_mask``: (n, K). Returns (n, L) in [0, 1].
    """
    p = np.exp(answer_logits - lse[..., None])
    return np.where(choice_mask[:, None, :], p, 0.0).sum(axis=-1)


def option_mass_one_source(
    answer_logits: NDArray[np.float64],
    lse: NDArray[np.float64],
    recorded_logits: NDArray[np.float64],
    recorded_lse: NDArray[np.float64],
    choice_mask: NDArray[np.bool_],
) -> NDArray[np.float64]:
    """Option mass (n, L) with numerator and denominator from one computation, at most 1.

    Where ``lse`` (n, L) is finite (the full-vocabulary lens was recomputed), the recomputed
    ``answer_logits`` (n, L, K); elsewhere ``recorded_logits`` and ``recorded_lse``, recorded
    together at extraction. Mixing the two is wrong for a bfloat16 model: its recorded lse comes
    from the bf16 forward, the recomputed logits from the stored float32 residual (an option
    mass of 1.002 was seen). Clipped at 1: a sum of exp(z - lse) over some of the tokens of one
    computation exceeds 1 only by float32 rounding of lse.
    """
    sampled = np.isfinite(lse)
    mass = np.where(
        sampled,
        option_mass(answer_logits, np.where(sampled, lse, recorded_lse), choice_mask),
        option_mass(recorded_logits, recorded_lse, choice_mask),
    )
    return np.minimum(mass, 1.0)


def recorded_checks(
    ds: xr.Dataset,
    answer_logits: NDArray[np.float64],
    lse: NDArray[np.float64],
    entropy: NDArray[np.float64] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Compare the recomputed lens with what extraction recorded; never raises.

    ``answer_logits``: (n, L', K), ``lse`` and ``entropy``: (n, L') (nan where not computed) for
    the layers of ``ds.layer`` selected in ``ds``. Returns (checks, warnings): max abs differences
    against ``lens_logits``, ``lens_lse``, ``lens_entropy`` (when the store records it) and, at
    the last depth, ``model_logits``, with the tolerance used and ``ok``; a warning sentence per
    failed check.
    """
    rec_z = np.asarray(ds["lens_logits"].values, np.float64)
    rec_lse = np.asarray(ds["lens_lse"].values, np.float64)
    tol = self_check_tolerance(recorded_dtype(ds.attrs.get("layercal", {})), rec_z)
    checks: dict[str, Any] = {"tolerance": tol}
    mask = np.asarray(ds["choice_mask"].values, bool)[:, None, :]
    diffs = {"lens_logits": np.where(mask, np.abs(answer_logits - rec_z), np.nan)}
    sampled = np.isfinite(lse)
    checks["lse_examples_checked"] = int(sampled.any(axis=1).sum())
    diffs["lens_lse"] = np.where(sampled, np.abs(lse - rec_lse), np.nan)
    if "lens_entropy" in ds and entropy is not None:
        rec_ent = np.asarray(ds["lens_entropy"].values, np.float64)
        diffs["lens_entropy"] = np.where(np.isfinite(entropy), np.abs(entropy - rec_ent), np.nan)
    warnings: list[str] = []
    for name, d in diffs.items():
        worst = float(np.nanmax(d)) if np.isfinite(d).any() else float("nan")
        checks[f"{name}_max_abs_diff"] = worst
        if np.isfinite(d).any() and not worst <= tol:
            warnings.append(
                f"{name} recomputed from resid differs from the value recorded at extraction by "
                f"{worst:.3g} (> {tol:.3g}): the store's final norm/W_U and its activations "
                "disagree. Run `layercal store verify` on it, or re-extract."
            )
    last = int(ds["layer"].values[-1])
    checks["model_logits_max_abs_diff"] = float("nan")
    if last == int(ds.attrs.get("layercal", {}).get("layout", {}).get("n_depth", last + 1)) - 1:
        model = np.asarray(ds["model_logits"].values, np.float64)
        d = np.where(mask[:, 0], np.abs(answer_logits[:, -1] - model), np.nan)
        checks["model_logits_max_abs_diff"] = float(np.nanmax(d))
        if not checks["model_logits_max_abs_diff"] <= tol:
            warnings.append(
                f"the lens at the last depth differs from the model's own logits by "
                f"{checks['model_logits_max_abs_diff']:.3g} (> {tol:.3g}): the recorded final "
                "norm or unembedding is not the model's. Re-extract with a fixed layercal."
            )
    checks["ok"] = not warnings
    return checks, warnings
