"""Shared-prefix reuse on tiny random models of every covered architecture: the suffixes run
against the prefix's cache give the same capture as the full prompts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from extract.forward.capture import run_batch
from extract.forward.prefix import SharedPrefix, common_prefix_len, prefix_groups
from extract.forward.tokens import pad_batch
from extract.model.arch import resolve
from tests.extract.tiny_models import ARCH_NAMES, VOCAB, tiny_model

ANSWER_IDS = [5, 17, 33, 60]
FIELDS = ("resid", "model_logits", "lens_logits", "lens_lse", "lens_entropy")


class _Tok:
    pad_token_id = 0


def _prompts(prefix_len: int = 40, seed: int = 2) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    head = torch.randint(1, VOCAB, (prefix_len,), generator=g).tolist()
    return [head + torch.randint(1, VOCAB, (k,), generator=g).tolist() for k in (5, 1, 9, 3, 9)]


def _model(name: str):
    from tests.extract.tiny_models import configs

    # a window shorter than the prefix, where the architecture has one: then only the window's
    # part of the prefix may be seen
    sliding = getattr(configs()[name].get_text_config(), "sliding_window", None) is not None
    return tiny_model(name, **({"sliding_window": 8} if sliding else {}))


@pytest.mark.parametrize("name", ARCH_NAMES)
def test_suffixes_against_the_prefix_cache_equal_full_prompts(name):
    model = _model(name)
    res = resolve(model)
    seqs = _prompts()
    ids, mask = pad_batch(_Tok(), seqs, "cpu", "left")
    full = run_batch(model, res, ids, mask, ANSWER_IDS)
    p = common_prefix_len(seqs)
    assert p == 40
    shared = SharedPrefix(model, seqs[0][:p])
    sids, smask = pad_batch(_Tok(), [s[p:] for s in seqs], "cpu", "right")
    reused = run_batch(model, res, sids, smask, ANSWER_IDS, prefix=shared)
    for f in FIELDS:
        a, b = getattr(full, f).numpy(), getattr(reused, f).numpy()
        scale = np.abs(a).max()
        np.testing.assert_allclose(b, a, atol=1e-5 * max(scale, 1.0), rtol=0, err_msg=f"{name} {f}")
    # the prefix is lent, not grown: a second batch sees the same prefix
    again = run_batch(model, res, sids[:2], smask[:2], ANSWER_IDS, prefix=shared)
    np.testing.assert_allclose(again.resid.numpy(), reused.resid.numpy()[:2], atol=1e-6, rtol=0)


def test_common_prefix_and_groups():
    assert common_prefix_len([[1, 2, 3, 4], [1, 2, 3, 5]]) == 3
    assert common_prefix_len([[1, 2, 3], [1, 2, 3, 4]]) == 2  # one token of its own each
    assert common_prefix_len([[7]]) == 0 and common_prefix_len([]) == 0
    seqs = [[1] * 40 + [2], [1] * 40 + [3], [9] * 5 + [4], [1] * 40 + [5, 6], [9] * 5 + [7]]
    keys = ["a", "a", "b", "a", "b"]
    assert prefix_groups(seqs, keys, min_prefix=32) == [(40, [0, 1, 3]), (0, [2, 4])]
    assert prefix_groups(seqs, keys, min_prefix=4) == [(40, [0, 1, 3]), (5, [2, 4])]
    assert prefix_groups(seqs[:1], ["a"], min_prefix=1) == [(0, [0])]
