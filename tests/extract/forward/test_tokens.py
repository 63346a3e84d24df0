"""extract/forward/tokens.py: token ids, the answer ids read in context, padding; with SmolLM2's
real tokenizer (no model weights needed)."""

from __future__ import annotations

import pytest
import torch

from extract.forward.tokens import TokenizationError, answer_token_ids, pad_batch, tokenize


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from extract.model.load import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m")[0])


def test_answer_ids_are_the_one_token_each_letter_adds_after_the_prompt(tok):
    prompts = ["Question: 2+2?\nA. 3\nB. 4\nAnswer:", "Q: sky?\nA. blue\nB. red\nAnswer:"]
    ids = answer_token_ids(tok, prompts, 4)
    assert ids == [tok.encode(f" {c}")[-1] for c in "ABCD"] and len(set(ids)) == 4
    for p in prompts:  # prompt + " X" is the prompt's tokens plus that one id
        for c, i in zip("ABCD", ids):
            assert tokenize(tok, [p + " " + c])[0] == tokenize(tok, [p])[0] + [i]
    no_space = answer_token_ids(tok, prompts, 2, target_delimiter="")
    assert no_space != ids[:2]  # "A" after "Answer:" is another token than " A"


def test_an_answer_that_is_not_one_token_is_refused_with_what_to_do(tok):
    with pytest.raises(TokenizationError, match="not a single token.*target_delimiter"):
        answer_token_ids(tok, ["Answer: the letter is"], 2, target_delimiter=" (")


def test_padding_left_and_right(tok):
    ids, mask = pad_batch(tok, [[5, 6, 7], [8]], "cpu", "left")
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    assert ids.tolist() == [[5, 6, 7], [pad, pad, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]] and ids.dtype == torch.long
    ids, mask = pad_batch(tok, [[5, 6, 7], [8]], "cpu", "right")
    assert ids.tolist() == [[5, 6, 7], [8, pad, pad]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
