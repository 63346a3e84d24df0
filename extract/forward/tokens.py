"""Tokenising prompts and deriving the answer-token ids in context."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from extract.data.prompts import answer_continuations


class TokenizationError(ValueError):
    """An answer letter is not one token after the prompt, or ids disagree between prompts."""


def tokenize(tok: Any, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of each prompt with the tokenizer's default special tokens (never added by hand)."""
    return [list(ids) for ids in tok(list(prompts), add_special_tokens=True)["input_ids"]]


def answer_token_ids(
    tok: Any, prompts: Sequence[str], n_choices: int, *, target_delimiter: str = " "
) -> list[int]:
    """Ids of the answers ``target_delimiter + "A"``, ... (default " A", " B", ...) as read at
    the last prompt position, derived in context. Pass the template's own delimiter
    (``PromptTemplate.target_delimiter``): "A" after "Answer:" is another token than " A".

    For each prompt given and each letter, ``prompt + delimiter + "X"`` must tokenise to the
    prompt's own tokens plus exactly one more; that token is the answer id, and it must be the
    same for every prompt checked.
    """
    conts = answer_continuations(n_choices, target_delimiter)
    ids: list[int | None] = [None] * n_choices
    for p in prompts:
        base = tokenize(tok, [p])[0]
        fulls = tokenize(tok, [p + c for c in conts])
        for k, (cont, full) in enumerate(zip(conts, fulls)):
            if len(full) != len(base) + 1 or full[: len(base)] != base:
                extra = full[len(base) :] if full[: len(base)] == base else full[-3:]
                raise TokenizationError(
                    f"answer {cont!r} is not a single token after the prompt with this tokenizer "
                    f"(it tokenises to {extra}). Use a template whose answer slot takes a single "
                    "token (e.g. ending in 'Answer:' with target_delimiter ' '), or a model whose "
                    "tokenizer has one."
                )
            if ids[k] is not None and ids[k] != full[-1]:
                raise TokenizationError(
                    f"answer {cont!r} tokenises to different ids in different prompts "
                    f"({ids[k]} vs {full[-1]}); the prompt end is not fixed by the template."
                )
            ids[k] = full[-1]
    if len(set(ids)) != len(ids):
        raise TokenizationError(f"answer letters share token ids: {ids}")
    return [int(i) for i in ids if i is not None]


def pad_batch(
    tok: Any, seqs: Sequence[Sequence[int]], device: torch.device | str, side: str = "left"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token id lists into (input_ids, attention_mask) on ``device``."""
    width = max(len(s) for s in seqs)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        t = torch.as_tensor(list(s), dtype=torch.long)
        if side == "left":
            ids[i, width - len(s) :] = t
            mask[i, width - len(s) :] = 1
        else:
            ids[i, : len(s)] = t
            mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)
