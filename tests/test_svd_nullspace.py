"""The unembedding SVD, its cache, and null-space ablations (synthetic and real SmolLM2)."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.interventions import svd as S
from analyze.interventions.nullspace import ablate, k_values, random_basis, run_nullspace
from analyze.lens.store import open_store
from layercal import format as fmt
from layercal.lens import NormSpec
from layercal.testing import example_meta, synthetic_store


def random_store(path, *, n=64, depth=4, hidden=16, vocab=40, seed=0, kind="rmsnorm"):
    """A small complete store without a model (random residuals and W_U)."""
    rng = np.random.default_rng(seed)
    ids = np.array([3, 4, 5, 6])
    w_u = rng.normal(size=(vocab, hidden)).astype(np.float32)
    weight = (1 + 0.3 * rng.normal(size=hidden)).astype(np.float32)
    bias = (0.1 * rng.normal(size=hidden)).astype(np.float32) if kind == "layernorm" else None
    spec = NormSpec(kind, weight, bias, 1e-5)
    resid = (
        rng.normal(size=(n, depth, hidden)).astype(np.float32) * np.arange(1, depth + 1)[:, None]
    )
    subjects = ["philosophy", "astronomy"]
    meta = example_meta(
        rng.integers(0, 4, n),
        [subjects[i % 2] for i in range(n)],
        categories=["humanities" if i % 2 == 0 else "stem" for i in range(n)],
        example_ids=[f"mmlu/test/{subjects[i % 2]}/{i:04d}" for i in range(n)],
        questions=[f"q{i}" for i in range(n)],
    )
    ident = {
        "model": f"synthetic-{seed}-{hidden}",
        "dataset": "mmlu",
        "split": "test",
        "dtype": "float32",
        "w_u_sha256": fmt.sha256_bytes(w_u),
    }
    return synthetic_store(
        path,
        meta=meta,
        n_depth=depth,
        w_u=w_u,
        norm=spec,
        answer_ids=ids,
        resid=resid,
        identity=ident,
        provenance={"template": {"name": "t"}},
        block=128,
        finalize={"finished": "test"},
    )


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


def test_k0_and_beta1_are_exact_noops():
    rng = np.random.default_rng(0)
    h = rng.normal(size=(5, 3, 8))
    assert ablate(h, np.zeros((8, 0)), 0.0) is h
    b = random_basis(8, 3, seed=1)
    assert ablate(h, b, 1.0) is h
    np.testing.assert_allclose(b.T @ b, np.eye(3), atol=1e-12)
    out = ablate(h, b, 0.0)
    np.testing.assert_allclose(out @ b, 0, atol=1e-12)  # projected out
    np.testing.assert_allclose(ablate(h, b, 2.0) @ b, 2 * (h @ b), atol=1e-12)
    np.testing.assert_allclose(out - h, -(h @ b) @ b.T, atol=1e-12)
    assert k_values(576, [0.0001, 0.01, 0.01, 0.5, 2.0]) == [1, 6, 288, 576]


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


def test_run_nullspace_synthetic_shapes_and_controls(tmp_path):
    ds = open_store(random_store(tmp_path / "s.zarr", kind="layernorm"))
    svd = S.unembed_svd(ds, cache=False)
    res = run_nullspace(ds, svd, fractions=[0.1, 0.5], n_random=2, n_boot=20, vocab_examples=8)
    ks = res.meta["ks"]
    assert ks == [2, 8]
    assert res.ablation.height == len(ks) * 4 * 4  # (null, top, 2 random) x k x 4 layers
    assert set(res.ablation["kind"]) == {"null", "top", "random"}
    assert (res.ablation["removed"] > 0).all()
    top = res.ablation.filter(res.ablation["kind"] == "top")
    null = res.ablation.filter(res.ablation["kind"] == "null")
    assert (top["logit_gain"].mean() or 0) > (null["logit_gain"].mean() or 0)
    assert res.share.height == 4 * 2


# --- the real model: the mechanism the method relies on -----------------------------------


@pytest.fixture(scope="module")
def smol_ds(tmp_path_factory, smollm2, data_dir):
    from test_steer_online import smol_store_path

    return open_store(smol_store_path(tmp_path_factory, smollm2, data_dir))


@pytest.mark.slow
def test_null_space_moves_the_norm_not_the_logits_smollm2(smol_ds):
    """Projecting out N_k removes much of the residual but changes the (centred, full-vocabulary)
    logits far less per unit removed than random or top-k subspaces; the norm changes a lot."""
    svd = S.unembed_svd(smol_ds, cache_dir=S.user_cache_dir())
    last = int(smol_ds.sizes["layer"]) - 1
    res = run_nullspace(
        smol_ds, svd, layers=[last], fractions=[0.01], n_random=2, n_boot=50, vocab_examples=4
    )
    row = {r["kind"] + str(r["seed"]): r for r in res.ablation.iter_rows(named=True)}
    null, top = row["null-1"], row["top-1"]
    rand = [row["random0"], row["random1"]]
    assert null["logit_gain"] < 0.5 * min(r["logit_gain"] for r in rand)
    assert null["logit_gain"] < 0.1 * top["logit_gain"]
    assert 1 - null["norm_ratio"] > 0.1  # the norm drops by over 10%
    assert all(1 - r["norm_ratio"] < 0.02 for r in rand + [top])
    share = res.share.filter(res.share["kind"] == "null")["share_mean"][0]
    assert share > 3 * res.share["random_expected"][0]  # the residual lives in N_k
