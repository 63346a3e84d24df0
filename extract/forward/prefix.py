"""Shared-prefix reuse: run a group's common prompt prefix once, then only the suffixes.

With ``--shots K`` every prompt of a subject starts with the same header and K exemplars, most of
its tokens. :func:`prefix_groups` finds, per group of prompts (a subject), the longest common
*token* prefix of their full tokenisations (so the token sequences are exactly those of the full
prompts: no boundary is re-tokenised). :class:`SharedPrefix` runs that prefix once (batch 1) and
keeps its key/value cache; :meth:`SharedPrefix.lend` hands a batch of B suffixes a read-only view
of it: each layer's ``update`` returns the prefix's keys and values broadcast to B rows followed
by the suffixes' own, and stores nothing, so the prefix is held once (not B times, nor once per
layer of a growing cache) and memory stays that of the zero-shot run.

Suffixes are right-padded: their real tokens sit at the true positions right after the prefix
(positions, cache indices and sliding windows all agree), and padding comes after the last real
token, where causal attention never lets a real token see it. Sliding-window layers (Gemma 2/3,
Mistral) get the window's part of the prefix, exactly as transformers' own cache keeps it.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from transformers.cache_utils import Cache, CacheLayerMixin, DynamicCache

MIN_PREFIX = 32  # tokens a group must share for one prefix pass to pay for itself


def common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest common token prefix, leaving every sequence one token of its own."""
    if not seqs:
        return 0
    first, n = seqs[0], min(len(s) for s in seqs) - 1
    for i in range(max(n, 0)):
        t = first[i]
        if any(s[i] != t for s in seqs):
            return i
    return max(n, 0)


def prefix_groups(
    seqs: Sequence[Sequence[int]], keys: Sequence[str], min_prefix: int = MIN_PREFIX
) -> list[tuple[int, list[int]]]:
    """``(prefix_len, indices)`` per group of prompts sharing ``keys[i]`` (first-seen order);
    groups sharing fewer than ``min_prefix`` tokens (or of one prompt) are pooled into one group
    with ``prefix_len`` 0: full prompts."""
    by_key: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        by_key.setdefault(k, []).append(i)
    out, full = [], []
    for idx in by_key.values():
        p = common_prefix_len([seqs[i] for i in idx]) if len(idx) > 1 else 0
        if p >= min_prefix:
            out.append((p, idx))
        else:
            full += idx
    if full:
        out.append((0, sorted(full)))
    return out


class _LentLayer(CacheLayerMixin):
    """One layer of a prefix cache, lent to a batch: ``update`` returns prefix + new, keeps none."""

    def __init__(self, src: Any) -> None:
        super().__init__()
        self.src = src
        self.keys, self.values = src.keys, src.values
        self.is_sliding = bool(getattr(src, "is_sliding", False))
        self.is_initialized = True
        self.device = src.keys.device

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        pass  # initialised from the prefix

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.keys is not None and self.values is not None  # set from the prefix
        b = key_states.shape[0]
        k = self.keys.expand(b, *self.keys.shape[1:])
        v = self.values.expand(b, *self.values.shape[1:])
        return torch.cat([k, key_states], dim=-2), torch.cat([v, value_states], dim=-2)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.src.get_mask_sizes(query_length)  # type: ignore[no-any-return]

    def get_seq_length(self) -> int:
        return self.src.get_seq_length()  # type: ignore[no-any-return]

    def get_max_length(self) -> int:
        return self.src.get_max_length()  # type: ignore[no-any-return]


def cache_argument(model: Any) -> str:
    """The keyword a model's forward takes its key/value cache by: ``cache`` (transformers >=
    5.25) or ``past_key_values`` (earlier releases; the later ones still accept it, with a
    deprecation warning on every call)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class SharedPrefix:
    """The key/value cache of one prompt prefix (batch 1), computed once."""

    def __init__(self, model: Any, ids: Sequence[int]) -> None:
        device = next(model.parameters()).device
        x = torch.as_tensor([list(ids)], dtype=torch.long, device=device)
        self.length = x.shape[1]
        cache = DynamicCache(config=model.config)
        self.argument = cache_argument(model)
        with torch.inference_mode():
            model.base_model(
                input_ids=x,
                attention_mask=torch.ones_like(x),
                position_ids=torch.arange(self.length, device=device)[None],
                use_cache=True,
                **{cache_argument(model.base_model): cache},
            )
        self.cache: Any = cache
        self.device = device

    def lend(self) -> Any:
        """A cache for one forward pass of a batch of suffixes; the prefix stays untouched."""
        return Cache(layers=[_LentLayer(layer) for layer in self.cache.layers])

    def inputs(self, suffix_mask: torch.Tensor) -> dict[str, Any]:
        """Model keyword arguments for right-padded suffixes with mask ``suffix_mask`` (B, S)."""
        b, s = suffix_mask.shape
        ones = torch.ones((b, self.length), dtype=suffix_mask.dtype, device=suffix_mask.device)
        pos = torch.arange(self.length, self.length + s, device=suffix_mask.device)
        return {
            "attention_mask": torch.cat([ones, suffix_mask], dim=1),
            "position_ids": pos[None].expand(b, s),
            self.argument: self.lend(),
            "use_cache": True,
        }

    def close(self) -> None:
        self.cache = None  # frees the prefix's keys and values
