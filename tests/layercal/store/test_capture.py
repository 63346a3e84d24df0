"""Stores with the capture ``mlp_last`` (``extract --capture mlp_last``): the arrays, their
digests, ``store verify``/``info``/``merge``/``pack`` on them; stores without it are unchanged
(tests/layercal/store/test_compat.py covers the optional ``lens_entropy`` the same way)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from analyze.lens.store import open_store
from layercal import format as fmt
from layercal.store import merge, pack, store_info, verify_store
from layercal.store.cli import main as store_main
from tests.layercal.store.fixtures import (
    CAPTURE_INFO,
    DATA,
    LAYOUT,
    NEURONS,
    build,
    problems_text,
)

NAMES = (*fmt.ACTIVATION_ARRAYS, "mlp_last")


@pytest.fixture(scope="module")
def cap(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("cap") / "cap.zarr", range(LAYOUT.n_blocks), capture=True)


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("plain") / "plain.zarr", range(LAYOUT.n_blocks))


def test_arrays_attrs_and_digests(cap, plain):
    g = zarr.open_group(cap, mode="r")
    assert fmt.activation_arrays(g) == NAMES and fmt.captures(g) == ("mlp_last",)
    assert fmt.activation_arrays(zarr.open_group(plain, mode="r")) == tuple(fmt.ACTIVATION_ARRAYS)
    assert g["mlp_last"].shape == (LAYOUT.n_examples, NEURONS)
    assert tuple(g["mlp_last"].metadata.dimension_names) == ("example", "neuron")
    assert g["mlp_last"].chunks == (LAYOUT.block, NEURONS)
    assert tuple(g["w_out_last"].metadata.dimension_names) == ("neuron", "hidden")
    np.testing.assert_array_equal(g["w_out_last"][...], DATA["w_out"])
    rec = fmt.attrs(g)["capture"]["mlp_last"]
    assert rec["neurons"] == NEURONS and rec["block"] == CAPTURE_INFO["block"]
    assert rec["w_out_sha256"] == fmt.sha256_bytes(DATA["w_out"])
    assert "capture" not in fmt.attrs(zarr.open_group(plain, mode="r"))
    for b, blk in enumerate(DATA["blocks"]):  # the digests cover mlp_last, last
        want = fmt.sha256_bytes(*(np.asarray(blk[k], np.float32) for k in NAMES))
        assert str(g["block_sha256"][b]) == want
        np.testing.assert_array_equal(g["mlp_last"][LAYOUT.block_slice(b)], blk["mlp_last"])
    ds = open_store(str(cap))
    assert ds["mlp_last"].dims == ("example", "neuron")
    assert ds["w_out_last"].dims == ("neuron", "hidden")


def test_plain_store_bytes_are_those_of_before_the_capture(cap, plain):
    """The same data without the capture: every common array identical, digests of five."""
    gc, gp = zarr.open_group(cap, mode="r"), zarr.open_group(plain, mode="r")
    assert set(gc.array_keys()) - set(gp.array_keys()) == {"mlp_last", "w_out_last"}
    for name in gp.array_keys():
        if name != "block_sha256":
            np.testing.assert_array_equal(np.asarray(gc[name][...]), np.asarray(gp[name][...]))
    for b, blk in enumerate(DATA["blocks"]):
        want = fmt.sha256_bytes(*(np.asarray(blk[k], np.float32) for k in fmt.ACTIVATION_ARRAYS))
        assert str(gp["block_sha256"][b]) == want


def test_verify_and_info(cap, plain, capsys):
    rep = verify_store(str(cap))
    assert rep.ok, problems_text(rep)
    assert any(
        "capture mlp_last: 48 neurons of block 3; w_out_last sha256 matches" in n for n in rep.notes
    ), rep.notes
    assert any("3/3 written blocks match" in n for n in rep.notes)
    assert verify_store(str(plain)).ok
    d = store_info(str(cap))
    assert d["activations"] == list(NAMES) and d["derived"] == []
    assert d["captures"]["mlp_last"]["neurons"] == NEURONS
    assert store_main(["store", "info", str(cap)]) == 0
    out = capsys.readouterr().out
    assert "capture:     mlp_last: 48 neurons of block 3" in out
    assert "(no " not in out  # nothing is reported missing
    assert store_info(str(plain))["captures"] == {}


def test_verify_names_a_changed_capture(cap, tmp_path):
    store = Path(shutil.copytree(cap, tmp_path / "a.zarr"))
    g = zarr.open_group(store, mode="r+")
    g["mlp_last"][200, 5] = g["mlp_last"][200, 5] + 1.0
    [p] = verify_store(str(store)).problems
    assert p.where == "block 1 (examples 128-255)"
    assert "or in mlp_last" in p.what, p.what
    store = Path(shutil.copytree(cap, tmp_path / "b.zarr"))
    g = zarr.open_group(store, mode="r+")
    g["w_out_last"][3, 1] = 7.0
    [p] = verify_store(str(store)).problems
    assert p.where == "w_out_last" and "w_out_sha256" in p.what


def test_verify_refuses_a_store_that_lost_its_capture(cap, tmp_path):
    store = Path(shutil.copytree(cap, tmp_path / "s.zarr"))
    shutil.rmtree(store / "mlp_last")
    text = problems_text(verify_store(str(store)))
    assert "mlp_last: contract array missing" in text, text
    store = Path(shutil.copytree(cap, tmp_path / "t.zarr"))
    shutil.rmtree(store / "w_out_last")
    text = problems_text(verify_store(str(store)))
    assert "w_out_last: contract array missing" in text, text


def test_capture_shards_merge_and_pack(cap, tmp_path):
    a = build(tmp_path / "a.zarr", [0, 2], shard="0/2", capture=True)
    b = build(tmp_path / "b.zarr", [1], shard="1/2", capture=True)
    out = tmp_path / "merged.zarr"
    assert merge(out, [str(a), str(b)]).complete
    rep = verify_store(str(out))
    assert rep.ok, problems_text(rep)
    g, ref = zarr.open_group(out, mode="r"), zarr.open_group(cap, mode="r")
    for name in ("mlp_last", "w_out_last", "block_sha256"):
        assert np.asarray(g[name][...]).tolist() == np.asarray(ref[name][...]).tolist(), name
    pack(str(out), tmp_path / "merged.zip")
    rep = verify_store(str(tmp_path / "merged.zip"))
    assert rep.ok, problems_text(rep)


def test_merge_refuses_shards_with_and_without_the_capture(tmp_path):
    a = build(tmp_path / "a.zarr", [0, 2], shard="0/2", capture=True)
    b = build(tmp_path / "b.zarr", [1], shard="1/2")
    with pytest.raises(fmt.StoreError, match="(?s)differ in the activation arrays.*mlp_last"):
        merge(tmp_path / "m.zarr", [str(a), str(b)])
    assert not (tmp_path / "m.zarr").exists()


def test_writes_need_the_capture_and_its_shape(tmp_path):
    g = zarr.open_group(build(tmp_path / "c.zarr", [], capture=True), mode="r+")
    five = {k: DATA["blocks"][0][k] for k in fmt.ACTIVATION_ARRAYS}
    with pytest.raises(fmt.StoreError, match="block 0: missing arrays \\['mlp_last'\\]"):
        fmt.write_block(g, 0, five)
    bad = {**DATA["blocks"][0], "mlp_last": DATA["blocks"][0]["mlp_last"][:, :3]}
    with pytest.raises(fmt.StoreError, match="block 0: mlp_last has shape"):
        fmt.write_block(g, 0, bad)
    assert not fmt.written_mask(g).any()
    with pytest.raises(fmt.StoreError, match="w_out_last has shape \\(4, 7\\)"):
        fmt.create_store(
            tmp_path / "x.zarr",
            LAYOUT,
            None,  # type: ignore[arg-type]  # refused before the metadata is read
            w_u=DATA["w_u"],
            lm_head_bias=None,
            norm=DATA["norm"],
            answer_token_ids=np.arange(4),
            attrs={},
            mlp_last=fmt.MlpLastCapture(np.zeros((4, 7)), {}),
        )
    assert not (tmp_path / "x.zarr").exists()
