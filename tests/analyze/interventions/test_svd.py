"""The SVD of the effective unembedding and its cache."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.interventions import svd as S
from analyze.lens.store import open_store
from layercal.lens import NormSpec
from tests.analyze.interventions.planted import random_store


@pytest.mark.parametrize("kind", ["rmsnorm", "layernorm"])
@pytest.mark.parametrize("method", ["scipy", "dask"])
def test_svd_reconstructs_effective_unembedding(kind, method):
    rng = np.random.default_rng(1)
    w_u = rng.normal(size=(300, 24)) * np.geomspace(10, 0.01, 24)  # a spread of scales
    spec = NormSpec(kind, 1 + 0.5 * rng.random(24), None, 1e-5, offset=0.0)
    w = S.effective_unembedding(w_u, spec)
    s, r = S.svd_of(w, method, chunk_rows=64)
    np.testing.assert_allclose(r.T @ r, np.eye(24), atol=1e-10)  # orthonormal
    assert np.all(np.diff(s) <= 1e-9)  # descending
    u = (w @ r) / np.where(s > 1e-12, s, 1.0)  # left factors from W̃R = UΣ
    np.testing.assert_allclose((u * s) @ r.T, w, atol=1e-9 * np.abs(w).max())
    np.testing.assert_allclose(s, np.linalg.svd(w, compute_uv=False), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.abs(w.sum(axis=0)), 0, atol=1e-9)  # vocabulary-centred
    if kind == "layernorm":  # 1 never reaches the logits: an exact null direction
        assert s[-1] < 1e-9 and abs(abs(r[:, -1] @ np.ones(24)) / np.sqrt(24) - 1) < 1e-9
        # with it named, the SVD is of W̃ on 1⊥ and 1/√d comes last, exactly, with σ = 0
        s2, r2 = S.svd_of(w, method, chunk_rows=64, null=S.exact_null(kind, 24))
        np.testing.assert_array_equal(r2[:, -1], np.full(24, 1 / np.sqrt(24)))
        assert s2[-1] == 0.0 and np.abs(r2[:, :-1].T @ np.ones(24)).max() < 1e-12
        np.testing.assert_allclose(r2.T @ r2, np.eye(24), atol=1e-10)
        np.testing.assert_allclose(s2, s, rtol=1e-9, atol=1e-9)
        u2 = (w @ r2) / np.where(s2 > 1e-12, s2, 1.0)
        np.testing.assert_allclose((u2 * s2) @ r2.T, w, atol=1e-9 * np.abs(w).max())
    else:
        assert S.exact_null(kind, 24) is None


def _tiny_model_store(path, arch):
    """A store of random residuals with a tiny random model's W_U, lm_head bias and final norm."""
    from extract.model.arch import resolve, unembedding_arrays
    from layercal import format as fmt
    from layercal.testing import example_meta, synthetic_store
    from tests.extract.tiny_models import tiny_model

    res = resolve(tiny_model(arch))
    w_u, bias = unembedding_arrays(res)
    rng = np.random.default_rng(0)
    n, d = 48, w_u.shape[1]
    resid = (rng.normal(size=(n, 3, d)) * 3 + rng.normal(size=(n, 3, 1)) * 5).astype(np.float32)
    ident = {"model": f"tiny-{arch}", "dataset": "synthetic", "split": "test", "dtype": "float32"}
    ident["w_u_sha256"] = fmt.sha256_bytes(np.asarray(w_u, np.float32))
    meta = example_meta(rng.integers(0, 4, n), ["astronomy", "virology"] * (n // 2))
    return synthetic_store(
        path, meta=meta, n_depth=3, w_u=w_u, norm=res.norm, answer_ids=[5, 6, 7, 8],
        resid=resid, lm_head_bias=bias, identity=ident,
    )  # fmt: skip


@pytest.mark.parametrize("arch", ["gpt2", "phi", "gpt_neox", "llama"])
def test_layernorm_null_space_leaves_out_the_mean_direction(tmp_path, arch):
    """LayerNorm (GPT-2, Phi, GPT-NeoX): 1/√d is not in N_k, and a k = 1 ablation changes the
    logits (ablating 1/√d, what N_1 was before, changes nothing); RMSNorm (Llama) unchanged."""
    from analyze.interventions.nullspace import ablate, run_nullspace
    from analyze.lens import AnswerLens

    ds = open_store(_tiny_model_store(tmp_path / "s.zarr", arch))
    svd = S.unembed_svd(ds, cache=False)
    d, ones = svd.hidden, np.full(svd.hidden, 1 / np.sqrt(svd.hidden))
    h = np.asarray(ds["resid"].isel(layer=-1).values, np.float64)
    lens = AnswerLens.of(ds)
    moved = np.abs(lens.logits(ablate(h, svd.null_basis(1))) - lens.logits(h)).max()
    res = run_nullspace(ds, svd, layers=[2], fractions=[1 / d], n_random=0, n_boot=10)
    null = res.ablation.filter(res.ablation["kind"] == "null").row(0, named=True)
    assert null["k"] == 1 and null["logit_change"] > 0 and moved > 1e-4
    if arch == "llama":
        assert svd.norm_kind == "rmsnorm" and svd.n_exact_null == 0
        np.testing.assert_array_equal(svd.null_basis(3), svd.r[:, -3:])
        assert res.meta["exact_null_excluded"] is None
        return
    assert svd.norm_kind == "layernorm" and svd.candidates == d - 1
    np.testing.assert_array_equal(svd.r[:, -1], ones)
    assert np.abs(svd.null_basis(d - 1).T @ ones).max() < 1e-12  # 1/√d in no N_k
    with pytest.raises(ValueError, match="outside 0..63"):
        svd.null_basis(d)
    still = np.abs(lens.logits(ablate(h, ones[:, None])) - lens.logits(h)).max()
    assert still < 1e-9  # why it is left out: the norm removes it anyway
    assert "LayerNorm" in res.meta["exact_null_excluded"]
    assert res.meta["singular_values_smallest"][0] == pytest.approx(svd.s[-2])


def test_svd_cache_sidecar_then_user_dir(tmp_path, monkeypatch):
    store = random_store(tmp_path / "s.zarr")
    ds = open_store(store)
    first = S.unembed_svd(ds)
    assert first.path and first.path.startswith(str(store) + ".derived/svd-")
    monkeypatch.setattr(S, "svd_of", lambda *a, **k: pytest.fail("cache not used"))
    again = S.unembed_svd(ds)
    np.testing.assert_array_equal(again.r, first.r)
    monkeypatch.undo()
    # a remote store (or an unwritable sidecar) falls back to $LAYERCAL_CACHE_DIR/derived
    monkeypatch.setenv("LAYERCAL_CACHE_DIR", str(tmp_path / "cache"))
    ds.encoding["source"] = "s3://bucket/s.zarr"
    remote = S.unembed_svd(ds)
    assert remote.path == str(tmp_path / "cache" / "derived" / first.path.rsplit("/", 1)[1])
    np.testing.assert_allclose(np.abs(remote.r), np.abs(first.r), atol=1e-10)
    blocked = random_store(tmp_path / "t.zarr", seed=1)
    (tmp_path / "t.zarr.derived").write_text("a file where the sidecar folder would go")
    assert S.unembed_svd(open_store(blocked)).path.startswith(str(tmp_path / "cache"))
