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
