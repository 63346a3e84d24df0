"""Mean-ablating last-block neurons in closed form, from stored activations (no model).

Neuron i with activation a_i (the store's ``mlp_last``: the input of the down projection at the
final token) adds a_i·w_i to the residual stream. Mean ablation replaces a_i by its mean over the
store's examples, μ_i, so the last residual becomes

    h' = h + (μ_i − a_i) · w_i                                   (Stolfo et al. 2024)

and the answer logits are read through the final norm:

- **total effect**: the norm recomputed on h' (the model's own output after the ablation);
- **direct effect**: the norm's scale frozen at its value on h (for LayerNorm the mean of h' is
  still subtracted: that part is linear), so only the logits' direction through W_U changes.

With the final norm's gain folded into the answer rows, W̃_ans = W_ans ∘ (offset + γ),
z = s(x)·W̃_ans·c(x) + W_ans·β + b (c: centring for LayerNorm, else identity; s = 1/√(mean
c(x)² + eps)), then the soft-cap if any. For every neuron at once, with δ = μ − a (n, N):

    W̃_ans c(h') = W̃_ans c(h) + δ_i · W̃_ans c(w_i)
    ‖c(h')‖²     = ‖c(h)‖² + 2 δ_i ⟨c(h), c(w_i)⟩ + δ_i² ‖c(w_i)‖²

so nothing of size (N, n, d) is formed. ``ablated_answer_logits`` is the same for any update
u (n, d) of h (several neurons at once), through :class:`~analyze.lens.AnswerLens` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from analyze.lens import AnswerLens


@dataclass(frozen=True)
class FoldedLens:
    """The answer lens with the final norm's gain folded in: ``wg`` (K, d) float64,
    ``const`` (K,) = W_ans·β + b, and the norm's kind, eps and soft-cap."""

    wg: NDArray[np.float64]
    const: NDArray[np.float64]
    layernorm: bool
    eps: float
    softcap: float | None

    @classmethod
    def of(cls, lens: AnswerLens) -> FoldedLens:
        spec = lens.spec
        w = np.asarray(lens.w, np.float64)
        const = np.zeros(w.shape[0])
        if spec.bias is not None:
            const = const + w @ np.asarray(spec.bias, np.float64)
        if lens.b is not None:
            const = const + np.asarray(lens.b, np.float64)
        wg = w * (np.asarray(spec.weight, np.float64) + spec.offset)
        return cls(wg, const, spec.kind == "layernorm", float(spec.eps), spec.softcap)

    def centre(self, x: NDArray[np.floating]) -> NDArray[np.float64]:
        """c(x) over the last axis: x − mean(x) for LayerNorm, x itself for RMSNorm."""
        y = np.asarray(x, np.float64)
        return y - y.mean(axis=-1, keepdims=True) if self.layernorm else y

    def scale(self, h: NDArray[np.floating]) -> NDArray[np.float64]:
        """s(h) = 1/√(mean c(h)² + eps): (..., d) -> (...)."""
        c = self.centre(h)
        return np.asarray(1.0 / np.sqrt(np.mean(c * c, axis=-1) + self.eps), np.float64)

    def finish(self, pre: NDArray[np.float64], scale: NDArray[np.float64]) -> NDArray[np.float64]:
        """s · (W̃_ans c(x)) + const, soft-capped: ``pre`` (..., K), ``scale`` (...)."""
        z = scale[..., None] * pre + self.const
        if self.softcap is not None:
            z = self.softcap * np.tanh(z / self.softcap)
        return np.asarray(z, np.float64)


def ablated_answer_logits(
    lens: AnswerLens, h: NDArray[np.floating], update: NDArray[np.floating], frozen: bool = False
) -> NDArray[np.float64]:
    """Answer logits of h + update, (n, K): the norm recomputed (``frozen=False``, the reference
    lens itself), or with the scale of h (the direct effect)."""
    x = np.asarray(h, np.float64) + np.asarray(update, np.float64)
    if not frozen:
        return lens.logits(x)
    f = FoldedLens.of(lens)
    return f.finish(f.centre(x) @ f.wg.T, f.scale(h))


@dataclass(frozen=True)
class NeuronAblation:
    """Closed-form per-neuron mean ablation at the last depth (see the module docstring).

    ``h`` (n, d) the last residuals; ``acts`` (n, N) the stored activations; ``w_out`` (N, d);
    ``mean`` (N,) the activation each neuron is set to (by default its mean over the examples).
    """

    lens: AnswerLens
    h: NDArray[np.float64]
    acts: NDArray[np.float64]
    w_out: NDArray[np.float64]
    mean: NDArray[np.float64]

    @classmethod
    def of(
        cls,
        lens: AnswerLens,
        h: NDArray[Any],
        acts: NDArray[Any],
        w_out: NDArray[Any],
        mean: NDArray[Any] | None = None,
    ) -> NeuronAblation:
        a = np.asarray(acts, np.float64)
        w = np.asarray(w_out, np.float64)
        hh = np.asarray(h, np.float64)
        if a.shape[0] != hh.shape[0] or a.shape[1] != w.shape[0] or w.shape[1] != hh.shape[1]:
            raise ValueError(
                f"shapes disagree: h {hh.shape}, activations {a.shape}, w_out {w.shape}"
            )
        mu = a.mean(axis=0) if mean is None else np.asarray(mean, np.float64)
        return cls(lens, hh, a, w, mu)

    def delta(self, neurons: NDArray[np.intp] | list[int]) -> NDArray[np.float64]:
        """μ − a for ``neurons``: (n, m)."""
        idx = np.asarray(neurons, np.intp)
        return np.asarray(self.mean[idx] - self.acts[:, idx], np.float64)

    def update(self, neurons: NDArray[np.intp] | list[int]) -> NDArray[np.float64]:
        """Σ_i (μ_i − a_i) w_i over ``neurons`` jointly: (n, d)."""
        idx = np.asarray(neurons, np.intp)
        return np.asarray(self.delta(idx) @ self.w_out[idx], np.float64)

    def each(self, neurons: NDArray[np.intp] | list[int], frozen: bool = False) -> Any:
        """Answer logits with each of ``neurons`` ablated alone: (m, n, K)."""
        idx = np.asarray(neurons, np.intp)
        f = FoldedLens.of(self.lens)
        hc, wc = f.centre(self.h), f.centre(self.w_out[idx])
        dl = self.delta(idx).T  # (m, n)
        pre = (hc @ f.wg.T)[None] + dl[..., None] * (wc @ f.wg.T)[:, None, :]
        if frozen:
            scale = np.broadcast_to(f.scale(self.h), dl.shape)
        else:
            d = hc.shape[1]
            sq = (
                (hc * hc).sum(axis=1)[None]
                + 2 * dl * (wc @ hc.T)
                + dl**2 * (wc * wc).sum(1)[:, None]
            )
            scale = 1.0 / np.sqrt(np.maximum(sq, 0.0) / d + f.eps)
        return f.finish(pre, scale)
