"""Capture the residual stream at the last real token of every prompt, at every depth.

Depth 0 is the input of the first decoder block (the embedding output, after any embedding scale
or position embedding), depth l the output of block l — all *before* the final norm (Hugging
Face's ``output_hidden_states`` puts the final norm into its last entry, so it is not used). Hooks
copy one row per prompt and layer; nothing else of the activations is kept, and the model's
unembedding runs on the last position only (``logits_to_keep=1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from extract.arch import Resolved


@dataclass
class BatchResult:
    """Per-batch outputs on the CPU, float32. B prompts, L depths, K answer tokens."""

    resid: torch.Tensor  # (B, L, hidden)
    model_logits: torch.Tensor  # (B, K)
    lens_logits: torch.Tensor  # (B, L, K)
    lens_lse: torch.Tensor  # (B, L)


def _hidden(output: Any) -> torch.Tensor:
    # transformers 5 decoder layers return a tensor; older ones a tuple (hidden, ...). Never take
    # output[0] of a tensor: that is batch row 0.
    return output if isinstance(output, torch.Tensor) else output[0]


class LastTokenCapture:
    """Forward hooks that copy ``hidden[b, last_index[b]]`` of each block into ``self.rows``."""

    def __init__(self, res: Resolved) -> None:
        self.res = res
        self.rows: list[torch.Tensor | None] = [None] * res.n_depth
        self.last_index: torch.Tensor | None = None
        self._handles: list[Any] = []

    def _take(self, depth: int, hs: torch.Tensor) -> None:
        assert self.last_index is not None
        idx = self.last_index.to(hs.device)
        self.rows[depth] = hs[torch.arange(hs.shape[0], device=hs.device), idx].detach()

    def __enter__(self) -> LastTokenCapture:
        blocks = self.res.blocks

        def pre(_mod: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            self._take(0, args[0] if args else kwargs["hidden_states"])

        self._handles.append(blocks[0].register_forward_pre_hook(pre, with_kwargs=True))
        for i, block in enumerate(blocks):

            def post(_mod: Any, _args: Any, output: Any, depth: int = i + 1) -> None:
                self._take(depth, _hidden(output))

            self._handles.append(block.register_forward_hook(post))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def stacked(self, device: torch.device) -> torch.Tensor:
        missing = [i for i, r in enumerate(self.rows) if r is None]
        if missing:
            raise RuntimeError(f"capture hooks did not fire for depths {missing}")
        return torch.stack([r.to(device) for r in self.rows if r is not None], dim=1)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, so left padding does not shift them."""
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.clamp(min=0)


@torch.inference_mode()
def run_batch(
    model: Any,
    res: Resolved,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    answer_ids: Sequence[int],
    lens_layer_chunk: int = 8,
) -> BatchResult:
    """One forward pass with capture; lens extras computed on the device in layer chunks."""
    lengths = attention_mask.long().sum(-1)
    left = bool((attention_mask[:, -1] == 1).all())
    last = torch.full_like(lengths, input_ids.shape[1] - 1) if left else lengths - 1
    cap = LastTokenCapture(res)
    cap.last_index = last
    kw: dict[str, Any] = {
        "attention_mask": attention_mask,
        "position_ids": position_ids(attention_mask),
    }
    with cap:
        out = model(input_ids=input_ids, use_cache=False, logits_to_keep=1 if left else 0, **kw)
    logits = out.logits
    final = (
        logits[:, -1]
        if left
        else logits[torch.arange(len(last), device=logits.device), last.to(logits.device)]
    )
    ids = torch.as_tensor(list(answer_ids), device=final.device)
    model_logits = final[:, ids].float()
    resid = cap.stacked(res.unembed.weight.device)  # (B, L, d) on the head's device
    lens_l, lse_l = [], []
    for s in range(0, resid.shape[1], lens_layer_chunk):
        z = res.apply_final_logits(resid[:, s : s + lens_layer_chunk]).float()  # (B, l, V)
        lse_l.append(torch.logsumexp(z, dim=-1))
        lens_l.append(z[..., ids.to(z.device)])
    return BatchResult(
        resid=resid.float().cpu(),
        model_logits=model_logits.cpu(),
        lens_logits=torch.cat(lens_l, dim=1).cpu(),
        lens_lse=torch.cat(lse_l, dim=1).cpu(),
    )
