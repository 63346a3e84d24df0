"""Full-vocabulary logit lens: streaming lse/entropy, folded answer logits, the one-pass graph,
the cross-checks against recorded values, and the real SmolLM2 lens equal to its logits."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from analyze.analysis import analyze_store
from analyze.lens import AnswerLens
from analyze.lens.store import open_store
from analyze.lens.vocab import (
    full_vocab_arrays,
    lens_pass,
    option_mass,
    recorded_checks,
    vocab_lse_entropy,
)
from layercal.lens import NormSpec, final_norm, lens_logits
from layercal.testing import example_meta, synthetic_store
from tests.analyze.planted import ANSWER_IDS, direct, make_store, random_logits


@pytest.mark.parametrize("chunk", [64, 1000, 333])
@pytest.mark.parametrize("softcap", [None, 3.0])
def test_streaming_lse_and_entropy_equal_whole_vocab(chunk, softcap):
    rng = np.random.default_rng(1)
    w = rng.normal(size=(1000, 32)).astype(np.float32)
    b = rng.normal(size=1000).astype(np.float32)
    x = rng.normal(size=(7, 32)) * 2
    spec = NormSpec("rmsnorm", np.ones(32), None, 1e-6, 0.0, softcap)
    lse_ref, ent_ref, _ = direct(x, w, spec, b)
    lse, ent = vocab_lse_entropy(final_norm(x, spec), w, b, softcap, chunk=chunk)
    np.testing.assert_allclose(lse, lse_ref, atol=2e-5)
    np.testing.assert_allclose(ent, ent_ref, atol=2e-5)
    assert (ent > 0).all() and (ent < np.log(1000)).all()
    # W_U given as uneven consecutive row blocks (a store's chunks) is the same W_U
    parts = [w[:100], w[100:101], w[101:700], w[700:]]
    lse_p, ent_p = vocab_lse_entropy(final_norm(x, spec), parts, b, softcap, chunk=chunk)
    np.testing.assert_allclose(lse_p, lse_ref, atol=2e-5)
    np.testing.assert_allclose(ent_p, ent_ref, atol=2e-5)
    # and a (V, d) array-like that is not numpy (a zarr array, sliced lazily) is one W_U
    zw = zarr.create_array(store={}, shape=w.shape, chunks=(300, 32), dtype="float32")
    zw[:] = w
    lse_z, ent_z = vocab_lse_entropy(final_norm(x, spec), zw, b, softcap, chunk=chunk)
    np.testing.assert_allclose(lse_z, lse_ref, atol=2e-5)
    np.testing.assert_allclose(ent_z, ent_ref, atol=2e-5)


@pytest.mark.parametrize(
    "kind,bias,offset,softcap",
    [
        ("rmsnorm", False, 0.0, None),
        ("layernorm", True, 0.0, None),
        ("rmsnorm", False, 1.0, 5.0),
    ],
)
def test_folded_answer_logits_equal_reference_lens(kind, bias, offset, softcap):
    rng = np.random.default_rng(2)
    d, v = 48, 200
    spec = NormSpec(
        kind, rng.normal(size=d), rng.normal(size=d) if bias else None, 1e-5, offset, softcap
    )
    w = rng.normal(size=(v, d)).astype(np.float32)
    b = rng.normal(size=v).astype(np.float32)
    h = (rng.normal(size=(6, 3, d)) * 4 + 1).astype(np.float32)
    lens = AnswerLens.from_arrays(spec, w, b, np.array([5, 9, 1]))
    ref = lens_logits(h, w[[5, 9, 1]], spec, b[[5, 9, 1]])
    np.testing.assert_allclose(lens.folded(h), ref, rtol=1e-5, atol=1e-5)


def test_one_pass_gives_vocab_quantities_of_sampled_examples(tmp_path):
    z, label = random_logits()
    ds = open_store(make_store(tmp_path / "s.zarr", z, label), chunks={"example": 128})
    sample = np.zeros(256, bool)
    sample[[0, 5, 130, 255]] = True
    out = lens_pass(ds, sample).compute()
    vocab_lse, vocab_ent = full_vocab_arrays(out)
    np.testing.assert_allclose(out["answer_logits"].values, z, atol=2e-6)
    spec = NormSpec("rmsnorm", np.ones(64), None, 0.0)
    lse, ent, p = direct(ds["resid"].values[sample], ds["W_U"].values, spec)
    np.testing.assert_allclose(vocab_lse[sample], lse, atol=1e-4)
    np.testing.assert_allclose(vocab_ent[sample], ent, atol=1e-4)
    assert np.isnan(vocab_lse[~sample]).all() and np.isnan(vocab_ent[~sample]).all()
    mass = option_mass(out["answer_logits"].values, vocab_lse, ds["choice_mask"].values)
    np.testing.assert_allclose(mass[sample], p[..., ANSWER_IDS].sum(-1), atol=1e-5)
    checks, warnings = recorded_checks(ds, out["answer_logits"].values, vocab_lse)
    assert checks["ok"] and not warnings and checks["lse_examples_checked"] == 4
    assert checks["lens_lse_max_abs_diff"] < 1e-4 and checks["model_logits_max_abs_diff"] < 1e-5


def test_mismatch_with_recorded_lens_is_reported(tmp_path):
    z, label = random_logits(n=128)
    path = make_store(tmp_path / "s.zarr", z, label)
    import zarr

    g = zarr.open_group(str(path), mode="r+")
    g["lens_lse"][:5] = g["lens_lse"][:5] + 0.5  # an extraction whose recorded lse is off
    g["lens_logits"][3, 2, 1] = g["lens_logits"][3, 2, 1] - 0.2
    res = analyze_store(path, n_boot=20, vocab_examples=None)
    checks, warnings = res.meta["checks"], res.meta["warnings"]
    assert not checks["ok"]
    assert checks["lens_lse_max_abs_diff"] == pytest.approx(0.5, abs=1e-3)
    assert checks["lens_logits_max_abs_diff"] == pytest.approx(0.2, abs=1e-3)
    assert any("lens_lse" in w and "layercal store verify" in w for w in warnings)
    assert any("lens_logits" in w for w in warnings)


@pytest.mark.slow
def test_real_smollm2_lens_equals_model_logits_and_recorded_lse(tmp_path, smollm2, data_dir):
    from extract.run import ExtractConfig, extract

    out = tmp_path / "smol.zarr"
    cfg = ExtractConfig(
        model="smollm2-135m",
        dataset="mmlu",
        out=str(out),
        subjects=["philosophy"],
        data_dir=str(data_dir),
        limit=16,
        batch_size=8,
        block=128,
        progress=False,
    )
    assert extract(cfg, loaded=smollm2).complete
    ds = open_store(out)
    sample = np.zeros(16, bool)
    sample[:3] = True
    res = lens_pass(ds, sample).compute()
    z = res["answer_logits"].values
    vocab_lse, vocab_ent = full_vocab_arrays(res)
    assert np.abs(z[:, -1] - ds["model_logits"].values).max() < 1e-4  # the lens is the model
    checks, warnings = recorded_checks(ds, z, vocab_lse)
    assert checks["ok"], warnings
    assert checks["lens_lse_max_abs_diff"] < 1e-3 and checks["lse_examples_checked"] == 3
    lse, ent, _ = direct(ds["resid"].values[:2, -1], ds["W_U"].values, AnswerLens.of(ds).spec)
    np.testing.assert_allclose(vocab_lse[:2, -1], lse, atol=1e-3)
    np.testing.assert_allclose(vocab_ent[:2, -1], ent, atol=1e-3)
    result = analyze_store(out, n_boot=20, vocab_examples=2)
    assert result.meta["checks"]["ok"] and result.meta["model"] == "smollm2-135m"
    assert result.meta["checks"]["model_logits_max_abs_diff"] < 1e-4


def test_lens_of_a_store_with_lm_head_bias_takes_the_answer_rows(tmp_path):
    # AnswerLens.of reads only the answer rows of W_U and of the bias (the full vocabulary is
    # read by lens_pass's own tasks); the answer logits then include the bias
    rng = np.random.default_rng(0)
    n, n_layers, d, vocab = 4, 2, 8, 50
    w = rng.normal(size=(vocab, d)).astype(np.float32)
    b = rng.normal(size=vocab).astype(np.float32)
    ids = np.array([3, 7, 9, 11])
    spec = NormSpec("rmsnorm", np.ones(d, np.float32), None, 1e-5)
    meta = example_meta(np.zeros(n, int), ["s"] * n, categories=["c"] * n, n_tokens=5)
    path = synthetic_store(
        tmp_path / "bias.zarr",
        meta=meta,
        n_depth=n_layers,
        w_u=w,
        norm=spec,
        answer_ids=ids,
        lm_head_bias=b,
        attrs={"identity": {}, "provenance": {}},
        block=128,
        write=[],  # created, nothing written
    )
    lens = AnswerLens.of(open_store(path, allow_partial=True))
    np.testing.assert_array_equal(lens.w, w[ids])
    np.testing.assert_array_equal(lens.b, b[ids])
    h = rng.normal(size=(n, n_layers, d)).astype(np.float32)
    np.testing.assert_allclose(
        lens.folded(h), lens_logits(h, w[ids], spec, b[ids]), rtol=1e-5, atol=1e-5
    )
