"""extract/model/arch.py: W_U handed to the store a slab at a time (``unembedding_rows``) and
the answer rows of the lens (``unembedding_answer_rows``), against the whole float32 copy
(``unembedding_arrays``) that extraction made before, in float32 and bfloat16 models."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from extract.model.arch import (
    resolve,
    unembedding_answer_rows,
    unembedding_arrays,
    unembedding_rows,
)
from layercal import format as fmt
from tests.extract.tiny_models import VOCAB, tiny_model


def _whole_digest(w: np.ndarray) -> str:
    """The identity's ``w_u_sha256`` as extraction computed it from the whole copy."""
    return hashlib.sha256(np.ascontiguousarray(w).astype("<f4").tobytes()).hexdigest()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["llama", "phi"])  # phi's head has a bias
def test_streamed_unembedding_is_the_whole_float32_copy_slab_by_slab(name, dtype):
    res = resolve(tiny_model(name).to(dtype))
    whole, bias = unembedding_arrays(res)
    src, src_bias = unembedding_rows(res)
    assert src.shape == whole.shape == (VOCAB, res.norm.weight.shape[0])
    slabs = [(i, s) for i, s in src.slabs(7)]
    assert all(s.dtype == np.float32 for _, s in slabs)
    np.testing.assert_array_equal(np.concatenate([s for _, s in slabs]), whole)
    for step in (7, VOCAB, fmt.W_U_SLAB_ROWS):
        assert fmt.sha256_rows(src, step) == _whole_digest(whole) == fmt.sha256_bytes(whole)
    if bias is None:
        assert src_bias is None
    else:
        np.testing.assert_array_equal(src_bias, bias)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_answer_rows_are_those_of_the_whole_copy(dtype):
    res = resolve(tiny_model("phi").to(dtype))
    whole, bias = unembedding_arrays(res)
    ids = [5, 3, 90, 5]
    w, b = unembedding_answer_rows(res, ids)
    np.testing.assert_array_equal(w, whole[ids])
    assert w.dtype == np.float32 and b is not None and bias is not None
    np.testing.assert_array_equal(b, bias[ids])


def test_smollm2s_streamed_unembedding_hashes_as_its_stores_did(smollm2):
    """SmolLM2's 49,152 x 576 W_U, three slabs: the digest of the whole float32 copy (what its
    stores recorded as ``w_u_sha256`` before W_U was streamed) and the streamed one agree."""
    res = resolve(smollm2.model)
    whole, _ = unembedding_arrays(res)
    src, _ = unembedding_rows(res)
    assert src.shape[0] > 2 * fmt.W_U_SLAB_ROWS
    assert fmt.sha256_rows(src) == _whole_digest(whole)
