"""The logit lens of a store on its answer tokens: the one implementation every analysis uses.

:class:`AnswerLens` holds what the lens needs (the final norm and the K answer rows of W_U and
of the lm_head bias) and the model dtype the store records, which sets the tolerance of every
comparison with the values recorded at extraction (:func:`layercal.lens.self_check_tolerance`:
1e-3 for float32 models, looser for bf16/fp16). ``layercal summary``, ``analyze_store``,
``nullspace``, ``direction fit`` and ``steer`` all use it; ``layercal store verify`` applies
the same tolerance function at the level of the store format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from numpy.typing import NDArray

from analyze.lens.store import norm_spec_of
from layercal.lens import NormSpec, lens_logits, recorded_dtype, self_check_tolerance

CHECK_EXAMPLES = 8  # examples whose recorded lens logits `AnswerLens.checked` compares


class LensMismatchError(ValueError):
    """The lens recomputed from ``resid`` disagrees with what extraction recorded."""


@dataclass(frozen=True)
class AnswerLens:
    """The lens on the answer tokens. ``w``: (K, d) float32 answer rows of W_U; ``b``: (K,)
    float32 or None; ``dtype``: the model dtype the store records (None counts as float32)."""

    spec: NormSpec
    w: NDArray[np.float32]
    b: NDArray[np.float32] | None
    dtype: str | None = None

    @classmethod
    def from_arrays(
        cls,
        spec: NormSpec,
        w_u: NDArray[Any],
        bias: NDArray[Any] | None,
        answer_ids: NDArray[np.integer[Any]],
        dtype: str | None = None,
    ) -> AnswerLens:
        """From a whole W_U (V, d), lm_head bias (V,) or None and answer token ids (K,)."""
        w = np.asarray(w_u, np.float32)[answer_ids]
        b = None if bias is None else np.asarray(bias, np.float32)[answer_ids]
        return cls(spec, w, b, dtype)

    @classmethod
    def of(cls, ds: xr.Dataset) -> AnswerLens:
        """The lens of an opened store; reads only the answer rows of W_U and of the bias."""
        ids = np.asarray(ds["answer_token_ids"].values, dtype=np.int64)
        w = np.asarray(ds["W_U"].isel(vocab=ids).values, np.float32)
        b = None
        if "lm_head_bias" in ds:
            b = np.asarray(ds["lm_head_bias"].isel(vocab=ids).values, np.float32)
        return cls(norm_spec_of(ds), w, b, recorded_dtype(ds.attrs.get("layercal", {})))

    @classmethod
    def checked(cls, ds: xr.Dataset, n: int = CHECK_EXAMPLES) -> AnswerLens:
        """:meth:`of`, after comparing the lens on the first ``n`` examples with the lens logits
        recorded at extraction, at every depth; raises :class:`LensMismatchError`."""
        lens = cls.of(ds)
        rows = slice(0, min(n, int(ds.sizes["example"])))
        h = np.asarray(ds["resid"].isel(example=rows).values)
        lens.check(lens.logits(h), np.asarray(ds["lens_logits"].isel(example=rows).values))
        return lens

    def logits(self, h: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
        """(..., d) residuals -> (..., K) answer logits, float64 (the reference formula)."""
        return lens_logits(h, self.w, self.spec, self.b)

    def folded(self, h: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
        """:meth:`logits` without materialising the normed residual: the norm is folded into
        the K unembedding rows (the pass over a whole store uses it).

        With W̃ = W ∘ (offset + γ) and s = 1/sqrt(mean square (+ eps)) of h (centred for
        LayerNorm), z = s (h · W̃) + W · β + b. Products and sums over d are float32 (the
        residual's own precision; relative error ~1e-6 against :meth:`logits`), the rest float64.
        """
        spec = self.spec
        w = self.w.astype(np.float64)
        w_t = (w * (np.asarray(spec.weight, np.float64) + spec.offset)).T.astype(np.float32)
        const = np.zeros(w.shape[0])
        if spec.bias is not None:
            const = const + w @ np.asarray(spec.bias, np.float64)
        if self.b is not None:
            const = const + self.b.astype(np.float64)
        x = np.asarray(h, np.float32)
        if spec.kind == "layernorm":
            x = x - x.mean(axis=-1, keepdims=True, dtype=np.float64).astype(np.float32)
        mean_sq = np.einsum("...d,...d->...", x, x).astype(np.float64) / x.shape[-1]
        z = (x @ w_t).astype(np.float64) / np.sqrt(mean_sq + spec.eps)[..., None] + const
        if spec.softcap is not None:
            z = spec.softcap * np.tanh(z / spec.softcap)
        return z

    def tolerance(self, recorded: NDArray[Any]) -> float:
        """The bound on |recomputed - recorded| for values like ``recorded`` (logits)."""
        return self_check_tolerance(self.dtype, np.asarray(recorded))

    def check(
        self, recomputed: NDArray[Any], recorded: NDArray[Any], name: str = "lens_logits"
    ) -> float:
        """Max |recomputed - recorded| (nan ignored); raises above :meth:`tolerance`."""
        rec = np.asarray(recorded)
        diff = float(np.nanmax(np.abs(rec - np.asarray(recomputed)), initial=0.0))
        tol = self.tolerance(rec)
        if not diff <= tol:
            raise LensMismatchError(
                f"{name} recomputed from resid differ from those recorded at extraction by "
                f"{diff:.3g} (> {tol:.3g}): the store's final-norm/W_U data and its activations "
                "disagree. Run `layercal store verify` on it."
            )
        return diff


def answer_logits(ds: xr.Dataset, lens: AnswerLens | None = None) -> xr.DataArray:
    """The lens on the answer tokens of every example and depth, lazily (dask), float32:
    (example, layer, choice)."""
    lens = lens or AnswerLens.of(ds)
    resid = ds["resid"].data
    if not isinstance(resid, da.Array):
        resid = da.from_array(resid, chunks=(2048, 1, -1))
    resid = resid.rechunk({2: -1})
    z = resid.map_blocks(
        lambda h: lens.logits(h).astype(np.float32),
        chunks=(*resid.chunks[:2], (lens.w.shape[0],)),
        dtype=np.float32,
    )
    return xr.DataArray(
        z,
        dims=("example", "layer", "choice"),
        coords={k: ds[k] for k in ("example", "layer", "choice")},
        name="lens_answer_logits",
    )
