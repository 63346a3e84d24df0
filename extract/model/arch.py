"""Architecture knowledge, in one place: where a causal LM keeps its decoder blocks, final norm
and unembedding, and how its final norm and logits are computed.

Everything the rest of layercal needs to know about a model family is one row of ``ARCHS``.
An architecture that is not listed is an :class:`ArchitectureError` naming what is missing — never
a guess, because a wrong guess (the last layer's scale applied to every layer, a forgotten
``1 + weight`` or soft-cap) gives plausible, silently wrong lens numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from layercal import format as fmt
from layercal.lens import NormKind, NormSpec


class ArchitectureError(ValueError):
    """The model's architecture is not covered, or does not look like its entry says."""


@dataclass(frozen=True)
class ArchEntry:
    blocks: str  # dotted path to the ModuleList of decoder blocks ("a|b": first that exists)
    final_norm: str  # dotted path to the final norm module
    unembed: str  # dotted path to the output projection (nn.Linear)
    norm_kind: NormKind
    norm_offset: float = 0.0  # Gemma: weight is stored as (gain - 1)
    embed_scale: bool = False  # Gemma: embeddings multiplied by sqrt(hidden)
    softcap_attr: str | None = None  # config attribute holding the final logit soft-cap
    # the capture mlp_last: in a decoder block, the MLP's output projection, whose input is the
    # MLP's hidden activation (gated: act(gate(x)) * up(x); else act(fc_in(x))); None: the block
    # has no single set of neurons, and ``mlp_none`` says why
    mlp_out: str | None = "mlp.down_proj"
    mlp_gated: bool = True
    mlp_none: str | None = None
    # a norm the block applies to the MLP's output before adding it to the residual stream
    # (Gemma 2/3, OLMo-2): a neuron then does not add a·w_out, recorded with the capture
    mlp_post_norm: str | None = None


_LLAMA = ArchEntry("model.layers", "model.norm", "lm_head", "rmsnorm")
_GEMMA = ArchEntry(
    "model.layers",
    "model.norm",
    "lm_head",
    "rmsnorm",
    norm_offset=1.0,
    embed_scale=True,
    softcap_attr="final_logit_softcapping",
)
# Gemma 3 checkpoints with a vision tower (model_type "gemma3", Gemma3ForConditionalGeneration):
# the text model sits under model.language_model; text-only prompts run it as a plain causal LM.
# Its forward applies no final logit soft-cap (only the text-only Gemma3ForCausalLM reads the
# config's), so none is recorded: the extraction self-check would catch a mismatch.
_GEMMA3_MM = ArchEntry(
    "model.language_model.layers",
    "model.language_model.norm",
    "lm_head",
    "rmsnorm",
    norm_offset=1.0,
    embed_scale=True,
)
_POST = "post_feedforward_layernorm"
_MOE = (
    "a mixture-of-experts block routes each token to a few of its experts' MLPs, so it has no "
    "single set of neurons to store"
)
ARCHS: dict[str, ArchEntry] = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "mixtral": replace(_LLAMA, mlp_out=None, mlp_none=_MOE),
    "qwen2": _LLAMA,
    "qwen3": _LLAMA,
    "olmo2": replace(_LLAMA, mlp_post_norm=_POST),
    "phi3": _LLAMA,
    "gemma": _GEMMA,
    "gemma2": replace(_GEMMA, mlp_post_norm=_POST),
    "gemma3_text": replace(_GEMMA, mlp_post_norm=_POST),
    "gemma3": replace(_GEMMA3_MM, mlp_post_norm=_POST),
    "phi": ArchEntry(
        "model.layers",
        "model.final_layernorm",
        "lm_head",
        "layernorm",
        mlp_out="mlp.fc2",
        mlp_gated=False,
    ),
    "gpt2": ArchEntry(  # c_proj is a Conv1D: its weight is (neuron, hidden) already
        "transformer.h",
        "transformer.ln_f",
        "lm_head",
        "layernorm",
        mlp_out="mlp.c_proj",
        mlp_gated=False,
    ),
    "gpt_neox": ArchEntry(
        "gpt_neox.layers",
        "gpt_neox.final_layer_norm",
        "embed_out|lm_head",
        "layernorm",
        mlp_out="mlp.dense_4h_to_h",
        mlp_gated=False,
    ),
}


@dataclass
class Resolved:
    """A loaded model's parts, located through its :class:`ArchEntry`."""

    model_type: str
    blocks: nn.ModuleList
    final_norm: nn.Module
    unembed: nn.Linear
    norm: NormSpec  # the final norm as data (float32 numpy)
    embed_scale: float  # informational: what the model multiplies its embeddings by

    @property
    def n_depth(self) -> int:
        return len(self.blocks) + 1

    def apply_final_logits(self, h: torch.Tensor) -> torch.Tensor:
        """The model's own head on residuals ``h`` (..., hidden): norm, unembed, soft-cap."""
        z = self.unembed(self.final_norm(h))
        if self.norm.softcap is not None:
            z = torch.tanh(z / self.norm.softcap) * self.norm.softcap
        return z


def _get(model: nn.Module, paths: str, what: str, model_type: str) -> Any:
    """Follow the first of the ``|``-separated dotted paths that exists."""
    for path in paths.split("|"):
        obj: Any = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            return obj
    raise ArchitectureError(
        f"{type(model).__name__} (model_type {model_type!r}) has no {what} at '{paths}'. "
        f"The entry for {model_type!r} in extract/model/arch.py does not match this model: fix it there."
    )


def _eps(module: nn.Module, config: Any) -> float:
    for name in ("variance_epsilon", "eps", "epsilon"):
        v = getattr(module, name, None)
        if isinstance(v, float):
            return v
    for name in ("rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "norm_eps"):
        v = getattr(config, name, None)
        if isinstance(v, float):
            return v
    raise ArchitectureError(f"cannot find the epsilon of final norm {type(module).__name__}")


def resolve(model: nn.Module) -> Resolved:
    """Locate blocks, final norm and unembedding of ``model`` and read its final norm as data."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None) or type(model).__name__
    entry = ARCHS.get(model_type)
    if entry is None:
        raise ArchitectureError(
            f"architecture {model_type!r} ({type(model).__name__}) is not covered by layercal: "
            "it needs to know where the decoder blocks, the final norm and the unembedding are, "
            "the norm kind and epsilon, any embedding scale and any final logit soft-cap. "
            f"Covered: {', '.join(sorted(ARCHS))}. Add an entry to ARCHS in extract/model/arch.py."
        )
    blocks = _get(model, entry.blocks, "decoder blocks", model_type)
    norm_mod = _get(model, entry.final_norm, "final norm", model_type)
    unembed = _get(model, entry.unembed, "unembedding", model_type)
    if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
        raise ArchitectureError(f"'{entry.blocks}' of {model_type!r} is not a list of blocks")
    if not isinstance(unembed, nn.Linear):
        raise ArchitectureError(f"unembedding '{entry.unembed}' of {model_type!r} is not Linear")
    weight = getattr(norm_mod, "weight", None)
    if weight is None:
        raise ArchitectureError(f"final norm '{entry.final_norm}' of {model_type!r} has no weight")
    bias = getattr(norm_mod, "bias", None)
    if entry.norm_kind == "rmsnorm" and bias is not None:
        raise ArchitectureError(f"final norm of {model_type!r} has a bias: it is not an RMSNorm")
    if entry.norm_kind == "layernorm" and not isinstance(norm_mod, nn.LayerNorm):
        raise ArchitectureError(
            f"final norm of {model_type!r} is {type(norm_mod).__name__}, expected LayerNorm"
        )
    get_text_config = getattr(config, "get_text_config", None)  # multimodal: the text part
    text_config = get_text_config() if get_text_config is not None else config
    softcap = getattr(text_config, entry.softcap_attr, None) if entry.softcap_attr else None
    hidden = int(weight.shape[0])
    spec = NormSpec(
        kind=entry.norm_kind,
        weight=weight.detach().float().cpu().numpy(),
        bias=None if bias is None else bias.detach().float().cpu().numpy(),
        eps=_eps(norm_mod, text_config),
        offset=entry.norm_offset,
        softcap=float(softcap) if softcap else None,
    )
    return Resolved(
        model_type=model_type,
        blocks=blocks,
        final_norm=norm_mod,
        unembed=unembed,
        norm=spec,
        embed_scale=math.sqrt(hidden) if entry.embed_scale else 1.0,
    )


def unembedding_arrays(res: Resolved) -> tuple[np.ndarray, np.ndarray | None]:
    """W_U (vocab, hidden) and the lm_head bias (vocab,) or None, as float32 numpy."""
    w = res.unembed.weight.detach().float().cpu().numpy()
    return w, _bias(res)


def unembedding_rows(res: Resolved) -> tuple[fmt.RowSource, np.ndarray | None]:
    """W_U as float32 rows converted a slab at a time (no whole float32 copy of a bf16 model's
    W_U), and the lm_head bias (vocab,) or None as float32 numpy."""
    weight = res.unembed.weight.detach()

    def rows(start: int, stop: int) -> np.ndarray:
        return weight[start:stop].float().cpu().numpy()

    return fmt.RowSource((int(weight.shape[0]), int(weight.shape[1])), rows), _bias(res)


def unembedding_answer_rows(res: Resolved, ids: list[int]) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows of W_U (K, hidden) and of the lm_head bias (K,) of the answer tokens, float32."""
    idx = torch.as_tensor(ids, device=res.unembed.weight.device)
    w = res.unembed.weight.detach()[idx].float().cpu().numpy()
    b = _bias(res)
    return w, None if b is None else b[np.asarray(ids)]


def _bias(res: Resolved) -> np.ndarray | None:
    b = res.unembed.bias
    return None if b is None else b.detach().float().cpu().numpy()


@dataclass
class LastMlp:
    """The capture ``mlp_last``: where the last block's MLP hidden activation is read.

    ``module``: the MLP's output (down) projection of the last block; its input at the final
    token is ``mlp_last``. ``w_out``: (neurons, hidden) float32, row i what neuron i adds to the
    residual stream per unit of activation. ``info``: recorded as ``attrs.capture.mlp_last``."""

    module: nn.Module
    w_out: np.ndarray
    info: dict[str, Any]

    @property
    def neurons(self) -> int:
        return int(self.w_out.shape[0])


def _out_weight(module: nn.Module, hidden: int, where: str) -> torch.Tensor:
    """(neurons, hidden) of an output projection: ``nn.Linear`` stores (out, in), GPT-2's
    ``Conv1D`` (in, out)."""
    weight = getattr(module, "weight", None)
    if isinstance(module, nn.Linear) and weight is not None:
        w = weight.detach().T
    elif type(module).__name__ == "Conv1D" and weight is not None:
        w = weight.detach()
    else:
        raise ArchitectureError(f"{where} is {type(module).__name__}, not a Linear or Conv1D")
    if w.ndim != 2 or w.shape[1] != hidden:
        raise ArchitectureError(
            f"{where} maps to {tuple(w.shape)}, not to the hidden size {hidden}"
        )
    return w


def last_mlp(model: nn.Module, res: Resolved) -> LastMlp:
    """Locate the capture ``mlp_last`` of a resolved model; ArchitectureError when its last
    block has no single MLP (a mixture of experts) or does not look like its entry says."""
    entry = ARCHS[res.model_type]
    if entry.mlp_out is None:
        raise ArchitectureError(
            f"--capture mlp_last is not available for {res.model_type!r}: {entry.mlp_none}."
        )
    block = res.blocks[-1]
    module = _get(block, entry.mlp_out, "MLP output projection (last block)", res.model_type)
    where = next((n for n, m in model.named_modules() if m is module), entry.mlp_out)
    hidden = int(res.norm.weight.shape[0])
    w = _out_weight(module, hidden, where)
    config: Any = getattr(model, "config", None)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    act = getattr(text, "hidden_act", None) or getattr(text, "activation_function", None)
    post = None
    if entry.mlp_post_norm is not None:
        norm = _get(block, entry.mlp_post_norm, "post-MLP norm", res.model_type)
        post = next((n for n, m in model.named_modules() if m is norm), entry.mlp_post_norm)
    info = {
        "block": len(res.blocks) - 1,
        "where": where,
        "value": "act(gate(x)) * up(x)" if entry.mlp_gated else "act(fc_in(x))",
        "gated": entry.mlp_gated,
        "activation": None if act is None else str(act),
        "dtype": str(w.dtype).removeprefix("torch."),
        "post_norm": post,  # not None: the MLP output is normalised before the residual add
    }
    return LastMlp(module, w.float().cpu().numpy(), info)
