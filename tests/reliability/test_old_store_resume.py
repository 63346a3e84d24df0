"""A store created before ``lens_entropy`` existed, resumed by this layercal: it writes only the
arrays that store has, so its blocks and digests are those an older layercal would write."""

from __future__ import annotations

import functools

import numpy as np
import xarray as xr
import zarr

from layercal import format as fmt
from layercal.store import store_info, verify_store

from .helpers import N_BLOCKS, blocks_written, extract_here

OLD_ARRAYS = ("resid", "model_logits", "lens_logits", "lens_lse")


def test_resume_of_a_store_without_lens_entropy(
    tmp_path, tiny_llama_dir, data_dir, reference, monkeypatch
):
    out = tmp_path / "old.zarr"
    with monkeypatch.context() as m:  # block 0 written as layercal did before lens_entropy
        m.setattr(fmt, "create_store", functools.partial(fmt.create_store, optional_arrays=()))
        assert extract_here(tiny_llama_dir, out, data_dir, "--shard", "0/3") == 0
    assert blocks_written(out) == 1 and not (out / "lens_entropy").exists()
    assert extract_here(tiny_llama_dir, out, data_dir, "--resume") == 0
    assert blocks_written(out) == N_BLOCKS and not (out / "lens_entropy").exists()
    g, ref = zarr.open_group(str(out), mode="r"), zarr.open_group(str(reference), mode="r")
    assert fmt.attrs(g)["status"]["complete"] and fmt.activation_arrays(g) == OLD_ARRAYS
    for name in (*OLD_ARRAYS, "written"):  # the same bytes as the new store's arrays
        assert np.array_equal(g[name][...], ref[name][...]), name
    lay = fmt.layout_of(g)
    for b in range(N_BLOCKS):  # digests over the four arrays, as before lens_entropy
        sl = lay.block_slice(b)
        want = fmt.sha256_bytes(*(np.asarray(ref[k][sl], np.float32) for k in OLD_ARRAYS))
        assert str(g["block_sha256"][b]) == want, b
    rep = verify_store(str(out))
    assert rep.ok, "\n".join(rep.lines())
    assert "lens_entropy" not in xr.open_zarr(out)
    assert store_info(str(out))["activations"] == list(OLD_ARRAYS)
