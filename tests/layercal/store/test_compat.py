"""Stores written before ``lens_entropy`` existed (format version 1 without the optional array)
keep working everywhere: xarray, open_store, info, verify, merge, pack; and new stores that lose
the array are caught. Built with layercal.format from the synthetic data of test_storetools."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from analyze.lens.store import open_store
from layercal import format as fmt
from layercal.store import merge, pack, store_info, verify_store
from layercal.store.cli import main as store_main
from tests.layercal.store.fixtures import (
    BLOCK,
    DATA,
    LAYOUT,
    OLD_ARRAYS,
    all_values,
    build,
    problems_text,
)


@pytest.fixture(scope="module")
def old(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("old") / "old.zarr"
    return build(path, range(LAYOUT.n_blocks), optional_arrays=())


@pytest.fixture(scope="module")
def new(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("new") / "new.zarr", range(LAYOUT.n_blocks))


def test_activation_arrays_of_old_and_new_stores(old, new):
    assert "lens_entropy" in fmt.OPTIONAL_ACTIVATION_ARRAYS
    g_old, g_new = (zarr.open_group(p, mode="r") for p in (old, new))
    assert fmt.activation_arrays(g_old) == OLD_ARRAYS
    assert fmt.activation_arrays(g_new) == (*OLD_ARRAYS, "lens_entropy")
    assert fmt.activation_arrays(xr.open_zarr(old)) == OLD_ARRAYS  # names of a Dataset
    assert fmt.activation_arrays({"resid": 0}) == OLD_ARRAYS  # required ones always
    with pytest.raises(fmt.StoreError, match="not optional activation arrays: \\['resid'\\]"):
        build(old.parent / "x.zarr", [], optional_arrays=("resid",))


def test_old_store_digests_are_those_of_the_four_arrays(old, new):
    """block_sha256 of an old store is unchanged by the addition: the four arrays' bytes."""
    for path, names in ((old, OLD_ARRAYS), (new, fmt.ACTIVATION_ARRAYS)):
        sha = zarr.open_group(path, mode="r")["block_sha256"][...]
        for b, blk in enumerate(DATA["blocks"]):
            want = fmt.sha256_bytes(*(np.asarray(blk[k], np.float32) for k in names))
            assert str(sha[b]) == want, (path.name, b)
    assert str(zarr.open_group(old, mode="r")["block_sha256"][0]) != str(
        zarr.open_group(new, mode="r")["block_sha256"][0]
    )


def test_old_store_opens_with_xarray_and_open_store(old, new):
    drop = ["lens_entropy", "block_sha256"]  # the digests differ: see the test above
    ds, ref = xr.open_zarr(old), xr.open_zarr(new)
    assert "lens_entropy" not in ds and "lens_entropy" in ref
    xr.testing.assert_identical(ds.drop_vars("block_sha256"), ref.drop_vars(drop))
    opened = open_store(str(old))
    assert "lens_entropy" not in opened and opened.sizes["example"] == LAYOUT.n_examples
    xr.testing.assert_identical(
        opened.drop_vars("block_sha256"), open_store(str(new)).drop_vars(drop)
    )


def test_old_store_verifies_and_names_a_changed_array(old, tmp_path):
    rep = verify_store(str(old))
    assert rep.ok, problems_text(rep)
    assert any("3/3 written blocks match" in n for n in rep.notes)
    assert any(n.startswith("no lens_entropy (optional") for n in rep.notes), rep.notes
    assert store_main(["store", "verify", str(old)]) == 0
    store = Path(shutil.copytree(old, tmp_path / "s.zarr"))
    g = zarr.open_group(store, mode="r+")
    g["lens_lse"][131, 3] = g["lens_lse"][131, 3] + 3.0
    [p] = verify_store(str(store)).problems
    assert p.where == "block 1 (examples 128-255)"
    assert "lens_lse is the changed array" in p.what and "example 131 layer 3" in p.what, p.what


def test_old_store_info(old, capsys):
    d = store_info(str(old))
    assert d["activations"] == list(OLD_ARRAYS) and d["derived"] == []
    assert store_main(["store", "info", str(old)]) == 0
    out = capsys.readouterr().out
    assert "(no lens_entropy: written before layercal recorded it)" in out
    assert "lens_lse" in out and "300/300 examples, 3/3 blocks written" in out
    d_new = store_info(str(build(old.parent / "n.zarr", [0])))
    assert d_new["activations"] == list(fmt.ACTIVATION_ARRAYS)


def test_old_shards_merge_and_pack(old, tmp_path):
    a = build(tmp_path / "a.zarr", [0, 2], shard="0/2", optional_arrays=())
    b = build(tmp_path / "b.zarr", [1], shard="1/2", optional_arrays=())
    out = tmp_path / "merged.zarr"
    assert merge(out, [str(a), str(b)]).complete
    assert not (out / "lens_entropy").exists()
    rep = verify_store(str(out))
    assert rep.ok, problems_text(rep)
    values, ref = all_values(out), all_values(old)
    assert sorted(values) == sorted(ref)
    for k in OLD_ARRAYS + ("block_sha256",):
        assert values[k].tolist() == ref[k].tolist(), k
    packed = pack(str(out), tmp_path / "merged.zip")
    assert packed.files > 0
    rep = verify_store(str(tmp_path / "merged.zip"))
    assert rep.ok, problems_text(rep)


def test_merge_refuses_old_and_new_shards_together(tmp_path):
    a = build(tmp_path / "a.zarr", [0, 2], shard="0/2", optional_arrays=())
    b = build(tmp_path / "b.zarr", [1], shard="1/2")
    with pytest.raises(fmt.StoreError, match="(?s)differ in the activation arrays.*lens_entropy"):
        merge(tmp_path / "m.zarr", [str(a), str(b)])
    assert not (tmp_path / "m.zarr").exists()


def test_write_block_writes_the_arrays_the_store_has(tmp_path):
    old_g = zarr.open_group(build(tmp_path / "o.zarr", [], optional_arrays=()), mode="r+")
    fmt.write_block(old_g, 0, DATA["blocks"][0])  # lens_entropy given, the store has none: kept out
    assert "lens_entropy" not in old_g and fmt.written_mask(old_g)[:BLOCK].all()
    new_g = zarr.open_group(build(tmp_path / "n.zarr", []), mode="r+")
    four = {k: DATA["blocks"][0][k] for k in OLD_ARRAYS}
    with pytest.raises(fmt.StoreError, match="block 0: missing arrays \\['lens_entropy'\\]"):
        fmt.write_block(new_g, 0, four)
    assert not fmt.written_mask(new_g).any()


def test_a_new_store_that_lost_lens_entropy_fails_verify(new, tmp_path):
    """Removing the array (data and metadata) from a store that had it is no old store: its
    consolidated metadata lists it and every block's sha256 covers it."""
    store = Path(shutil.copytree(new, tmp_path / "s.zarr"))
    shutil.rmtree(store / "lens_entropy")
    rep = verify_store(str(store))
    text = problems_text(rep)
    assert not rep.ok
    assert "lens_entropy/zarr.json: listed in the consolidated metadata" in text, text
    assert sum("content sha256" in p.what for p in rep.problems) == LAYOUT.n_blocks, text
    assert "this store has no lens_entropy" in text
