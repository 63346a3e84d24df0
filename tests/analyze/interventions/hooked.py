"""Ablating a neuron inside the model with a forward hook: the reference the closed form of
analyze/interventions/neuron_ablation.py is checked against (tiny models and SmolLM2)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def hooked_logits(model, module, seq: Sequence[int], neuron: int, value: float) -> np.ndarray:
    """The model's logits (V,) at the last token of the unpadded prompt ``seq`` with neuron
    ``neuron`` of ``module``'s input (the last block's MLP hidden activation) set to ``value``
    at that token only."""

    def pre(_m, args):
        x = args[0].clone()
        x[:, -1, neuron] = value
        return (x, *args[1:])

    handle = module.register_forward_pre_hook(pre)
    try:
        with torch.no_grad():
            out = model(torch.tensor([list(seq)]))
    finally:
        handle.remove()
    return out.logits[0, -1].double().numpy()
