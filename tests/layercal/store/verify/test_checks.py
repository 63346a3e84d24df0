"""``layercal store verify``: a flipped byte in every kind of object, missing and truncated
objects, metadata that disagrees, which array of a block changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from layercal import format as fmt
from layercal.store import verify_store
from layercal.store.cli import main as store_main
from tests.layercal.store.fixtures import (
    BLOCK,
    BLOCK_ARRAYS,
    DATA,
    LAYOUT,
    L,
    V,
    build,
    copy,
    objects,
    problems_text,
)


def test_verify_clean_store(ref, capsys):
    assert store_main(["store", "verify", str(ref)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "3/3 written blocks match" in out and "re-encoding" in out


def data_objects(store: Path) -> list[tuple[str, str, int]]:
    """(object key, array, block or chunk index) of every activation shard/chunk and W_U chunk."""
    out = []
    for key in objects(store):
        name, *rest = key.split("/")
        if name in (*BLOCK_ARRAYS, "W_U") and rest[0] == "c":
            out.append((key, name, int(rest[1])))
    return out


def test_verify_detects_a_flipped_byte_in_every_data_object(ref, tmp_path):
    store = copy(ref, tmp_path / "s.zarr")
    found = data_objects(store)
    assert len(found) == 5 * LAYOUT.n_blocks + 1
    rng = np.random.default_rng(1)
    for key, name, index in found:
        path = store / key
        size = path.stat().st_size
        # the Blosc header (incl. its size field, which decoding ignores), the middle, the shard
        # index or stream end, and random positions; whole-byte and single-bit flips
        positions = {0, 12, 13, size // 2, size - 1, int(rng.integers(16, size - 1))}
        for i, pos in enumerate(sorted(positions)):
            mask = 0xFF if i % 2 else 0x01
            data = path.read_bytes()
            path.write_bytes(data[:pos] + bytes([data[pos] ^ mask]) + data[pos + 1 :])
            rep = verify_store(str(store), sample=16)
            path.write_bytes(data)
            assert not rep.ok, f"flip of byte {pos} (mask {mask:#x}) in {key} went unseen"
            label = "W_U" if name == "W_U" else f"block {index}"
            assert any(label in p.where for p in rep.problems), problems_text(rep)
    assert verify_store(str(store)).ok  # every flip was undone


@pytest.mark.parametrize(
    ("name", "index", "culprit"),
    [
        ("lens_logits", (130, 2, 1), "lens_logits is the changed array"),
        ("lens_lse", (131, 3), "lens_lse is the changed array"),
        ("lens_entropy", (135, 2), "lens_entropy is the changed array"),
        ("model_logits", (132, 0), "model_logits is the changed array"),
        ("resid", (133, 1, 5), "resid is the changed array"),
        ("resid", (134, L - 1, 5), "resid is the changed array"),
    ],
)
def test_verify_names_the_changed_array_of_a_block(ref, tmp_path, name, index, culprit):
    store = copy(ref, tmp_path / "s.zarr")
    g = zarr.open_group(store, mode="r+")
    g[name][index] = g[name][index] + 3.0  # re-encoded properly: only the value differs
    [p] = verify_store(str(store)).problems
    assert p.where == "block 1 (examples 128-255)"
    assert culprit in p.what and f"example {index[0]}" in p.what, p.what


def test_verify_names_an_impossible_entropy_without_recomputing_it(ref, tmp_path, monkeypatch):
    """Above the recomputation budget lens_entropy is not recomputed, but an entropy outside
    [0, log V] still names it."""
    import layercal.store.verify._attrs as attr

    monkeypatch.setattr(attr, "LSE_BUDGET", 0)
    store = copy(ref, tmp_path / "s.zarr")
    g = zarr.open_group(store, mode="r+")
    g["lens_entropy"][140, 1] = np.log(V) + 0.01
    [p] = verify_store(str(store)).problems
    assert p.where == "block 1 (examples 128-255)"
    assert "lens_entropy is the changed array (outside [0, log vocab]" in p.what, p.what
    assert "example 140 layer 1" in p.what
    g["lens_entropy"][140, 1] = DATA["blocks"][1]["lens_entropy"][140 - BLOCK, 1] + 0.01
    [p] = verify_store(str(store)).problems  # within range: too costly to recompute here
    assert "lens_lse or lens_entropy (too costly to recompute here)" in p.what, p.what


def test_verify_flags_an_impossible_entropy_recorded_with_its_block(tmp_path, monkeypatch):
    """A block whose sha256 matches but whose recorded entropy is negative: the writer erred."""
    bad = dict(DATA["blocks"][0], lens_entropy=DATA["blocks"][0]["lens_entropy"].copy())
    bad["lens_entropy"][3, 2] = -0.5
    monkeypatch.setitem(DATA, "blocks", [bad, *DATA["blocks"][1:]])
    store = build(tmp_path / "s.zarr", range(LAYOUT.n_blocks))
    [p] = verify_store(str(store)).problems
    assert p.where == "lens_entropy block 0 (examples 0-127)"
    assert "1 values outside [0, log vocab]" in p.what and "-0.5" in p.what


def test_verify_missing_and_truncated_objects(ref, tmp_path):
    cases = {
        "resid/c/1/0/0": ("delete", "resid block 1", "missing"),
        "lens_lse/c/0/0": ("half", "lens_lse block 0", ""),
        "resid/c/2/0/0": ("minus1", "resid block 2", ""),
        "model_logits/c/2/0": ("empty", "model_logits block 2", ""),
        "W_U/c/0/0": ("delete", "W_U", "sha256"),
    }
    for i, (key, (how, where, what)) in enumerate(cases.items()):
        store = copy(ref, tmp_path / f"s{i}.zarr")
        path = store / key
        data = path.read_bytes()
        if how == "delete":
            path.unlink()
        else:
            path.write_bytes(
                {"half": data[: len(data) // 2], "minus1": data[:-1], "empty": b""}[how]
            )
        rep = verify_store(str(store))
        assert not rep.ok, key
        hits = [p for p in rep.problems if where in p.where and what in p.what]
        assert hits, f"{key}:\n{problems_text(rep)}"
        assert store_main(["store", "verify", str(store)]) == 1


def json_positions(text: str, fragments: list[str]) -> list[int]:
    """Byte offsets of the first character of each fragment's value in ``text``."""
    return [text.index(f) + len(f) - 1 for f in fragments]


def test_verify_detects_flipped_bytes_in_metadata(ref, tmp_path):
    store = copy(ref, tmp_path / "s.zarr")
    metas = [k for k in objects(store) if k.endswith("zarr.json")]
    assert len(metas) == 22
    cases: list[tuple[str, int, int]] = []
    for key in metas:
        size = (store / key).stat().st_size
        if (
            key != "zarr.json"
        ):  # an array's metadata: every change differs from its consolidated copy
            cases += [(key, pos, 0x01) for pos in np.linspace(0, size - 1, 3).astype(int)]
    root = (store / "zarr.json").read_text()
    sensitive = [
        '"layercal": ',  # the key itself
        '"identity": {',
        '"model": "t',
        '"w_u_sha256": "',
        '"template_sha256": "',
        '"n_depth": 5',
        '"block": 1',
        '"kind": "r',
        '"has_lm_head_bias": f',
        '"zarr_format": 3',
        '"consolidated_metadata": {',
        '"must_understand": f',
    ]
    cases += [("zarr.json", pos, 0x01) for pos in json_positions(root, sensitive)]
    start = root.index('"consolidated_metadata"')
    cases += [("zarr.json", int(p), 0x01) for p in np.linspace(start + 200, len(root) - 2, 12)]
    cases += [("zarr.json", int(p), 0xFF) for p in np.linspace(0, len(root) - 1, 12)]
    for key, pos, mask in cases:
        path = store / key
        data = path.read_bytes()
        path.write_bytes(data[:pos] + bytes([data[pos] ^ mask]) + data[pos + 1 :])
        rep = verify_store(str(store), sample=16)
        path.write_bytes(data)
        assert not rep.ok, f"flip of byte {pos} ({data[pos : pos + 1]!r}) in {key} went unseen"
    assert verify_store(str(store)).ok


def test_verify_metadata_disagreeing_with_data(ref, tmp_path):
    store = copy(ref, tmp_path / "s.zarr")
    g = zarr.open_group(store, mode="r+", use_consolidated=False)
    info = fmt.attrs(g)
    info["identity"]["answer_token_ids"] = [10, 11, 12, 14]
    info["layout"]["n_depth"] = 6
    g.attrs["layercal"] = info
    g["written"][0:BLOCK] = False
    rep = verify_store(str(store))
    text = problems_text(rep)
    assert "answer_token_ids" in text and "identity.answer_token_ids" in text
    assert "layout implies" in text  # shapes vs attrs layout
    assert "differs from its copy in the consolidated metadata" not in text or "written" in text
    info["layout"]["n_depth"] = L
    g.attrs["layercal"] = info
    rep = verify_store(str(store))
    assert any(
        "block 0" in p.where and "although status says complete" in p.what for p in rep.problems
    ), problems_text(rep)
