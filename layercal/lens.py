"""The logit lens as plain numpy: final norm + unembedding applied to a stored residual.

This is the reference formula both stages trust (methods.md section 3)::

    z[l] = softcap( W_U · norm(h[l]) + b )

with ``norm`` the model's final norm stored as data (:class:`NormSpec`). It never imports torch:
the extraction stage checks its own (torch) lens against this one, and the analysis stage uses it
directly. Computation is in float64 so that rounding here is far below the model's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

NormKind = Literal["rmsnorm", "layernorm"]


@dataclass(frozen=True)
class NormSpec:
    """The final norm as data.

    ``rmsnorm``: ``h / sqrt(mean(h²) + eps) * (offset + weight)`` (Gemma: ``offset = 1``).
    ``layernorm``: ``(h - mean(h)) / sqrt(var(h) + eps) * weight + bias``.
    """

    kind: NormKind
    weight: np.ndarray  # (hidden,)
    bias: np.ndarray | None  # (hidden,) or None
    eps: float
    offset: float = 0.0
    softcap: float | None = None  # final logit soft-cap (Gemma 2): z <- c * tanh(z / c)


def final_norm(h: np.ndarray, spec: NormSpec) -> np.ndarray:
    """Apply the final norm over the last axis. ``h``: (..., hidden) -> (..., hidden) float64."""
    x = np.asarray(h, dtype=np.float64)
    w = np.asarray(spec.weight, dtype=np.float64) + spec.offset
    if spec.kind == "rmsnorm":
        scale = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + spec.eps)
        y = x * scale * w
    elif spec.kind == "layernorm":
        mu = x.mean(axis=-1, keepdims=True)
        xc = x - mu
        var = np.mean(xc * xc, axis=-1, keepdims=True)
        y = xc / np.sqrt(var + spec.eps) * w
    else:  # pragma: no cover - NormSpec is validated where it is built
        raise ValueError(f"unknown norm kind {spec.kind!r}; expected 'rmsnorm' or 'layernorm'")
    if spec.bias is not None:
        y = y + np.asarray(spec.bias, dtype=np.float64)
    return y


def lens_logits(
    h: np.ndarray, w_u: np.ndarray, spec: NormSpec, bias: np.ndarray | None = None
) -> np.ndarray:
    """Logit-lens logits for the rows of ``w_u`` given.

    ``h``: (..., hidden) residuals before the final norm; ``w_u``: (V', hidden) unembedding rows
    (all of the vocabulary, or only the answer tokens); ``bias``: (V',) lm_head bias rows or None.
    Returns (..., V') float64, soft-capped when the model soft-caps.
    """
    z = final_norm(h, spec) @ np.asarray(w_u, dtype=np.float64).T
    if bias is not None:
        z = z + np.asarray(bias, dtype=np.float64)
    if spec.softcap is not None:
        z = spec.softcap * np.tanh(z / spec.softcap)
    return z


FP32_TOL = 1e-3


def self_check_tolerance(dtype: str | None, logits: np.ndarray) -> float:
    """Bound on |lens(last layer) - model logits| (and on recomputed vs recorded lens values).

    1e-3 for float32 models (None counts as float32). For bf16/fp16 models the model rounds its
    own final norm and unembedding, so the bound is 0.05 + 2% of the largest |logit| given.
    """
    if dtype in (None, "float32"):
        return FP32_TOL
    return 0.05 + 0.02 * float(np.nanmax(np.abs(logits), initial=0.0))


def recorded_dtype(info: Mapping[str, Any]) -> str | None:
    """The model dtype a store records (``attrs["layercal"]``: ``identity.dtype``, else
    ``provenance.model.dtype``); None when it records none. The argument of
    :func:`self_check_tolerance` for every check of a store's lens."""
    dtype = info.get("identity", {}).get("dtype") or (
        info.get("provenance", {}).get("model", {}).get("dtype")
    )
    return None if dtype is None else str(dtype)
