"""The answer-option lens of a store: one formula, its fast form, and the one tolerance every
analysis applies against the values recorded at extraction."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.interventions import fit_direction
from analyze.interventions.steer_data import StoreData
from analyze.lens import AnswerLens, LensMismatchError, answer_logits, open_store
from layercal.lens import NormSpec, lens_logits
from layercal.testing import example_meta, lens_block, synthetic_store

N, L, D, V = 48, 4, 16, 40
IDS = np.array([3, 4, 5, 6])


def store(path, *, dtype="float32", offset=0.0, kind="rmsnorm"):
    rng = np.random.default_rng(1)
    w_u = rng.normal(size=(V, D)).astype(np.float32)
    bias = rng.normal(size=D).astype(np.float32) if kind == "layernorm" else None
    norm = NormSpec(kind, (1 + 0.2 * rng.normal(size=D)).astype(np.float32), bias, 1e-5)
    resid = (rng.normal(size=(N, L, D)) * np.arange(1, L + 1)[:, None]).astype(np.float32)

    def block(b, sl):
        arrays = lens_block(resid[sl], w_u, norm, IDS)
        arrays["lens_logits"] = arrays["lens_logits"] + offset
        return arrays

    subjects = [("philosophy", "astronomy")[i % 2] for i in range(N)]
    meta = example_meta(rng.integers(0, 4, N), subjects, example_ids=[f"m/{i}" for i in range(N)])
    ident = {"model": "synthetic", "dataset": "mmlu", "split": "test", "dtype": dtype}
    return synthetic_store(
        path, meta=meta, n_depth=L, w_u=w_u, norm=norm, answer_ids=IDS, blocks=block,
        identity=ident, block=128,
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["rmsnorm", "layernorm"])
def test_the_lens_reproduces_the_recorded_logits_in_both_forms(tmp_path, kind):
    ds = open_store(store(tmp_path / "s.zarr", kind=kind))
    lens = AnswerLens.of(ds)
    h, rec = ds["resid"].values, ds["lens_logits"].values
    np.testing.assert_allclose(lens.logits(h), rec, atol=1e-5)
    np.testing.assert_allclose(lens.folded(h), rec, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(answer_logits(ds, lens).values, lens.logits(h).astype(np.float32))
    w = ds["W_U"].values[IDS]
    np.testing.assert_array_equal(lens.logits(h), lens_logits(h, w, lens.spec))
    assert lens.check(lens.logits(h), rec) <= 1e-3


def test_the_tolerance_is_the_store_dtype_s(tmp_path):
    fp32 = AnswerLens.checked(open_store(store(tmp_path / "a.zarr")))
    assert fp32.dtype == "float32" and fp32.tolerance(np.array([10.0])) == 1e-3
    bf16 = AnswerLens.checked(open_store(store(tmp_path / "b.zarr", dtype="bfloat16", offset=0.02)))
    assert bf16.tolerance(np.array([-10.0, 5.0])) == pytest.approx(0.05 + 0.02 * 10)


def test_direction_and_steering_refuse_a_store_whose_lens_disagrees(tmp_path):
    ds = open_store(store(tmp_path / "s.zarr", offset=0.5))
    with pytest.raises(LensMismatchError, match="differ from those recorded"):
        AnswerLens.checked(ds)
    with pytest.raises(LensMismatchError):
        fit_direction(ds)
    with pytest.raises(LensMismatchError):
        StoreData.of(ds)
