"""``layercal store merge``: shard stores written on separate machines combined into one."""

from __future__ import annotations

import json

import pytest
import xarray as xr
import zarr

from analyze.lens.store import open_store
from layercal import format as fmt
from layercal.store import merge, verify_store
from layercal.store.cli import main as store_main
from tests.layercal.store.fixtures import (
    BLOCK_ARRAYS,
    LAYOUT,
    all_values,
    assert_same_values,
    build,
    problems_text,
)


def test_merge_shards_equals_the_single_store(ref, tmp_path, capsys):
    a = build(tmp_path / "a.zarr", [0, 2], shard="0/2")
    b = build(tmp_path / "b.zarr", [1], shard="1/2")
    out = tmp_path / "merged.zarr"
    assert store_main(["store", "merge", str(out), str(a), str(b)]) == 0
    assert "complete" in capsys.readouterr().out
    assert_same_values(all_values(out), all_values(ref))
    for b_ in range(LAYOUT.n_blocks):  # whole objects copied byte for byte
        for name in BLOCK_ARRAYS:
            key = {"resid": f"resid/c/{b_}/0/0"}.get(
                name, f"{name}/c/{b_}/0" + "/0" * (name == "lens_logits")
            )
            assert (out / key).read_bytes() == (ref / key).read_bytes(), key
    info = fmt.attrs(zarr.open_group(out, mode="r"))
    assert info["status"]["complete"] is True
    assert [m["blocks"] for m in info["status"]["merged_from"]] == [[0, 2], [1]]
    assert [r["shard"] for r in info["runs"]] == ["0/2", "1/2"]
    assert "consolidated_metadata" in json.loads((out / "zarr.json").read_text())
    assert verify_store(str(out)).ok
    xr.testing.assert_equal(open_store(str(out)), open_store(str(ref)))


def test_merge_partial_then_the_rest(tmp_path, ref):
    a = build(tmp_path / "a.zarr", [0], shard="0/3")
    b = build(tmp_path / "b.zarr", [1], shard="1/3")
    c = build(tmp_path / "c.zarr", [2, 1], shard="2/3")  # block 1 twice, same content: fine
    first = merge(tmp_path / "ab.zarr", [str(a), str(b)])
    assert first.missing == [2] and not first.complete
    assert "consolidated_metadata" not in json.loads((tmp_path / "ab.zarr/zarr.json").read_text())
    rep = verify_store(str(tmp_path / "ab.zarr"))  # an unfinished store verifies: 2 of 3 blocks
    assert rep.ok and any("2/2 written blocks match" in n for n in rep.notes), problems_text(rep)
    second = merge(tmp_path / "abc.zarr", [str(tmp_path / "ab.zarr"), str(c)])
    assert second.complete and second.sources == {
        0: str(tmp_path / "ab.zarr"),
        1: str(tmp_path / "ab.zarr"),
        2: str(c),
    }
    assert_same_values(all_values(tmp_path / "abc.zarr"), all_values(ref))


def test_merge_refuses_inconsistent_inputs(tmp_path, capsys):
    a = build(tmp_path / "a.zarr", [0])
    other = build(tmp_path / "o.zarr", [1], model="other-model")
    with pytest.raises(fmt.StoreError, match="(?s)identity differs.*model: 'tiny-test'"):
        merge(tmp_path / "m1.zarr", [str(a), str(other)])
    assert store_main(["store", "merge", str(tmp_path / "m1.zarr"), str(a), str(other)]) == 1
    assert "error: refusing to merge" in capsys.readouterr().err
    assert not (tmp_path / "m1.zarr").exists()
    # a different block size: same identity, different layout
    g = zarr.open_group(build(tmp_path / "l.zarr", [1]), mode="r+")
    info = fmt.attrs(g)
    info["layout"]["block"] = 256
    g.attrs["layercal"] = info
    with pytest.raises(fmt.StoreError, match="layout differs"):
        merge(tmp_path / "m2.zarr", [str(a), str(tmp_path / "l.zarr")])
    # the same block written twice with different content
    c = build(tmp_path / "c.zarr", [0])
    zarr.open_group(c, mode="r+")["block_sha256"][0] = "f" * 64
    with pytest.raises(fmt.StoreError, match="block 0 .* different content"):
        merge(tmp_path / "m3.zarr", [str(a), str(c)])
    # per-example data that differs (another dataset under the same identity)
    d = build(tmp_path / "d.zarr", [1])
    zarr.open_group(d, mode="r+")["label"][5] = 3
    with pytest.raises(fmt.StoreError, match="array label holds different values"):
        merge(tmp_path / "m4.zarr", [str(a), str(d)])
    with pytest.raises(fmt.StoreError, match="exists"):
        merge(a, [str(a)])
