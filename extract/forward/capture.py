"""Capture the residual stream at the last real token of every prompt, at every depth.

Depth 0 is the input of the first decoder block (the embedding output, after any embedding scale
or position embedding), depth l the output of block l — all *before* the final norm (Hugging
Face's ``output_hidden_states`` puts the final norm into its last entry, so it is not used). Hooks
copy one row per prompt and layer; nothing else of the activations is kept, and the model's
unembedding runs on the last real token only (``logits_to_keep=1`` under left padding, per-row
positions under right padding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from extract.forward.prefix import SharedPrefix
from extract.model.arch import LastMlp, Resolved


@dataclass
class BatchResult:
    """Per-batch outputs on the CPU, float32. B prompts, L depths, K answer tokens."""

    resid: torch.Tensor  # (B, L, hidden)
    model_logits: torch.Tensor  # (B, K)
    lens_logits: torch.Tensor  # (B, L, K)
    lens_lse: torch.Tensor  # (B, L)
    lens_entropy: torch.Tensor  # (B, L) nats
    mlp_last: torch.Tensor | None = None  # (B, neurons): the capture mlp_last, when asked for


def hidden_of(output: Any) -> torch.Tensor:
    # transformers 5 decoder layers return a tensor; older ones a tuple (hidden, ...). Never take
    # output[0] of a tensor: that is batch row 0.
    return output if isinstance(output, torch.Tensor) else output[0]


class LastTokenCapture:
    """Forward hooks that copy ``hidden[b, last_index[b]]`` of each block into ``self.resid``.

    ``resid`` (B, L, hidden) is allocated once, before the forward pass. Keeping one small tensor
    per depth alive instead, while the forward allocates and frees its large activations,
    fragments the host heap: +250 MB peak RSS for SmolLM2-135M at batch 16 (docs/benchmarks.md).
    """

    def __init__(
        self,
        res: Resolved,
        last_index: torch.Tensor,
        resid: torch.Tensor,
        mlp: tuple[LastMlp, torch.Tensor] | None = None,
    ) -> None:
        self.res = res
        self.last_index = last_index
        self.resid = resid
        self.mlp = mlp  # the capture mlp_last and its (B, neurons) buffer
        self.filled = [False] * (res.n_depth + (mlp is not None))
        self._handles: list[Any] = []

    def _rows(self, hs: torch.Tensor) -> torch.Tensor:
        """``hs[b, last_index[b]]`` for every prompt b: (B, ...)."""
        idx = self.last_index.to(hs.device)
        return hs[torch.arange(hs.shape[0], device=hs.device), idx]

    def _take(self, depth: int, hs: torch.Tensor) -> None:
        self.resid[:, depth].copy_(self._rows(hs))
        self.filled[depth] = True

    def __enter__(self) -> LastTokenCapture:
        blocks = self.res.blocks

        def pre(_mod: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            self._take(0, args[0] if args else kwargs["hidden_states"])

        self._handles.append(blocks[0].register_forward_pre_hook(pre, with_kwargs=True))
        for i, block in enumerate(blocks):

            def post(_mod: Any, _args: Any, output: Any, depth: int = i + 1) -> None:
                self._take(depth, hidden_of(output))

            self._handles.append(block.register_forward_hook(post))
        if self.mlp is not None:
            mlp, buffer = self.mlp

            def mlp_in(_mod: Any, args: tuple[Any, ...]) -> None:
                buffer.copy_(self._rows(args[0]))  # the projection's input at the final token
                self.filled[-1] = True

            self._handles.append(mlp.module.register_forward_pre_hook(mlp_in))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def result(self) -> torch.Tensor:
        missing = [i for i, done in enumerate(self.filled[: self.res.n_depth]) if not done]
        if missing:
            raise RuntimeError(f"capture hooks did not fire for depths {missing}")
        if not all(self.filled):
            raise RuntimeError("the mlp_last hook did not fire (the last block's MLP never ran)")
        return self.resid


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, so left padding does not shift them."""
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.clamp(min=0)


def _keep(left: bool, last: torch.Tensor, res: Resolved) -> int | torch.Tensor:
    """``logits_to_keep`` for the model's own head: the last position under left padding, else
    each row's last real token as (B, 1) positions (transformers' per-row form), on the device
    of the final hidden states."""
    return 1 if left else last[:, None].to(next(res.final_norm.parameters()).device)


def _last_logits(logits: torch.Tensor, left: bool) -> torch.Tensor:
    """(B, V) logits at the last real token, from the head's output for :func:`_keep`."""
    if left or logits.ndim == 3:
        return logits[:, -1]
    # older transformers (no per-row form) index every row with the whole (B, 1) tensor: the
    # head then ran on (B, B, 1) positions, and row b's own is the diagonal
    rows = torch.arange(logits.shape[0], device=logits.device)
    return logits[rows, rows, -1]


def lse_entropy_(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-sum-exp and entropy in nats of softmax over the last axis of ``z`` (..., V) -> (...),
    from one exp. Overwrites ``z``; holds one more buffer of its size.

    With y = z - max z, e = exp(y) and r = the sum of e without one maximal entry (the 1 of
    exp(0)): lse = max z + log1p(r), H = log1p(r) - sum(e y) / (1 + r): two terms >= 0, so
    nothing cancels and a peaked softmax keeps its relative precision in float32 (lse - sum p z
    loses it: 3% at H = 1e-3 over 49,152 tokens, where this is within 1e-6 of float64)."""
    top, first = z.max(dim=-1, keepdim=True)
    y = z.sub_(top)  # <= 0
    e = y.exp().scatter_(-1, first, 0.0)
    rest = e.sum(dim=-1)
    head = torch.log1p(rest)
    return top.squeeze(-1) + head, head - e.mul_(y).sum(dim=-1) / (1.0 + rest)


@torch.inference_mode()
def run_batch(
    model: Any,
    res: Resolved,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    answer_ids: Sequence[int],
    lens_rows: int = 128,
    prefix: SharedPrefix | None = None,
    mlp: LastMlp | None = None,
) -> BatchResult:
    """One forward pass with capture; lens extras (answer logits, full-vocabulary log-sum-exp
    and entropy, in float32) computed on the device in layer chunks.

    A chunk holds about ``lens_rows`` (prompt, depth) rows of full-vocabulary logits (128 x
    SmolLM2's 49,152 = 25 MB in fp32): every depth at once for batches of up to 4 prompts (the
    long prompts under a token budget), so W_U is streamed from memory once per batch rather
    than once per 8 depths; 8 depths at a time at batch 16.

    ``prefix``: the prompts' shared prefix, already run (:mod:`extract.forward.prefix`); ``input_ids``
    and ``attention_mask`` then hold only the right-padded suffixes.

    ``mlp``: the capture ``mlp_last`` (:func:`extract.model.arch.last_mlp`): its input at the final
    token, kept in float32 (exact for bf16/fp16 activations)."""
    lengths = attention_mask.long().sum(-1)
    left = bool((attention_mask[:, -1] == 1).all())
    last = torch.full_like(lengths, input_ids.shape[1] - 1) if left else lengths - 1
    head = res.unembed.weight.device
    B, L, K = input_ids.shape[0], res.n_depth, len(answer_ids)
    hidden_dtype = model.get_input_embeddings().weight.dtype
    # every output buffer before the forward pass (see LastTokenCapture): (B, L, d) on the head
    resid = torch.empty((B, L, res.norm.weight.shape[0]), dtype=hidden_dtype, device=head)
    lens_logits = torch.empty((B, L, K), dtype=torch.float32, device=head)
    lens_lse = torch.empty((B, L), dtype=torch.float32, device=head)
    lens_entropy = torch.empty((B, L), dtype=torch.float32, device=head)
    mlp_cap: tuple[LastMlp, torch.Tensor] | None = None
    if mlp is not None:
        mlp_cap = (mlp, torch.empty((B, mlp.neurons), dtype=torch.float32, device=head))
    cap = LastTokenCapture(res, last, resid, mlp_cap)
    kw: dict[str, Any] = (
        {
            "attention_mask": attention_mask,
            "position_ids": position_ids(attention_mask),
            "use_cache": False,
        }
        if prefix is None
        else prefix.inputs(attention_mask)
    )
    with cap:
        out = model(input_ids=input_ids, logits_to_keep=_keep(left, last, res), **kw)
    final = _last_logits(out.logits, left)
    ids = torch.as_tensor(list(answer_ids), device=final.device)
    model_logits = final[:, ids].float()
    cap.result()  # raises if a hook did not fire
    chunk = max(1, min(L, lens_rows // B))
    for s in range(0, L, chunk):
        z = res.apply_final_logits(resid[:, s : s + chunk]).float()  # (B, l, V)
        lens_logits[:, s : s + chunk] = z[..., ids.to(z.device)]
        lse, entropy = lse_entropy_(z)  # last: it overwrites z
        lens_lse[:, s : s + chunk], lens_entropy[:, s : s + chunk] = lse, entropy
    return BatchResult(
        resid=resid.float().cpu(),
        model_logits=model_logits.cpu(),
        lens_logits=lens_logits.cpu(),
        lens_lse=lens_lse.cpu(),
        lens_entropy=lens_entropy.cpu(),
        mlp_last=None if mlp_cap is None else mlp_cap[1].cpu(),
    )
