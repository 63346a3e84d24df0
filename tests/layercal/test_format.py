"""layercal/format.py: a conformance suite for the store format (docs/store-format.md).

One store is written through the format's own functions from known arrays, then read back as
plain Zarr v3 from three places: the local folder, a packed ``.zip`` (``layercal store pack``)
and an in-memory fsspec copy. Each must hold the contract: the attributes, the layout, every
array with its dimension names, dtype, chunking and values, each block's sha256 over its
activation arrays, the lens as data. Then the write protocol's refusals, on the folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import numpy as np
import pytest
import zarr

from layercal import format as fmt
from layercal.lens import NormSpec
from layercal.store import pack

N, L, D, V, K, BLOCK = 300, 3, 8, 16, 4, 128  # three blocks: 128, 128 and 44 examples
SUBJECTS = ["anatomy", "virology", "astronomy"]


def _meta() -> fmt.ExampleMeta:
    choices = [["a", "b", "c"] if i % 5 == 0 else ["a", "b", "c", "d"] for i in range(N)]
    return fmt.ExampleMeta(
        example_id=[f"q{i}" for i in range(N)],
        subject=[SUBJECTS[i % 3] for i in range(N)],
        category=["stem" if i % 3 else "other" for i in range(N)],
        question=[f"question {i}?" for i in range(N)],
        choices=choices,
        label=np.arange(N) % 3,
        n_tokens=50 + np.arange(N),
    )


def _blocks(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every activation array for all N examples (any float32 values; the format stores them)."""
    return {
        "resid": rng.normal(size=(N, L, D)).astype(np.float32),
        "model_logits": rng.normal(size=(N, K)).astype(np.float32),
        "lens_logits": rng.normal(size=(N, L, K)).astype(np.float32),
        "lens_lse": rng.normal(size=(N, L)).astype(np.float32),
        "lens_entropy": rng.uniform(0, np.log(V), size=(N, L)).astype(np.float32),
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict:
    rng = np.random.default_rng(0)
    w_u = rng.normal(size=(V, D)).astype(np.float32)
    norm = NormSpec("rmsnorm", rng.normal(size=D).astype(np.float32), None, 1e-5, offset=1.0)
    layout = fmt.Layout(N, L, D, V, K, BLOCK)
    path = tmp_path_factory.mktemp("format") / "s.zarr"
    identity = {  # what a resume must match (every key `store verify` expects)
        "model": "m",
        "revision": None,
        "dtype": "float32",
        "dataset": "mmlu",
        "split": "test",
        "dataset_sha256": "0" * 64,
        "template_sha256": "1" * 64,
        "answer_token_ids": [10, 11, 12, 13],
        "w_u_sha256": fmt.sha256_bytes(w_u),
    }
    g = fmt.create_store(
        path,
        layout,
        _meta(),
        w_u=w_u,
        lm_head_bias=None,
        norm=norm,
        answer_token_ids=np.array([10, 11, 12, 13]),
        attrs={"identity": identity, "provenance": {"template": {"name": "t"}}},
    )
    arrays = _blocks(rng)
    digests = [
        fmt.write_block(g, b, {k: v[layout.block_slice(b)] for k, v in arrays.items()})
        for b in range(layout.n_blocks)
    ]
    fmt.finalize(path, {"finished": "now"})
    return {"path": path, "w_u": w_u, "norm": norm, "arrays": arrays, "digests": digests}


def _folder(written: dict, tmp: Path) -> zarr.Group:
    return zarr.open_group(str(written["path"]), mode="r")


def _zip(written: dict, tmp: Path) -> zarr.Group:
    out = tmp / "s.zip"
    pack(str(written["path"]), out, verify=False)  # random values: no lens to self-check
    return zarr.open_group(zarr.storage.ZipStore(out, mode="r"), mode="r")


def _memory(written: dict, tmp: Path) -> zarr.Group:
    fs = fsspec.filesystem("memory")
    root = f"/layercal-format-{tmp.name}/s.zarr"
    for f in sorted(written["path"].rglob("*")):
        if f.is_file():
            fs.pipe_file(f"{root}/{f.relative_to(written['path'])}", f.read_bytes())
    return zarr.open_group(f"memory://{root}", mode="r")


BACKENDS = {"folder": _folder, "zip": _zip, "memory": _memory}


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, written: dict, tmp_path: Path) -> zarr.Group:
    return BACKENDS[request.param](written, tmp_path)


def test_the_attributes_say_format_version_layout_and_status(store):
    info = fmt.check_format(store, "store")  # also: only safe codecs, Zarr v3
    assert info["format"] == "layercal-activation-store" and info["format_version"] == 1
    assert info["status"] == {"created": True, "complete": True, "finished": "now"}
    assert fmt.layout_of(store) == fmt.Layout(N, L, D, V, K, BLOCK)
    assert info["layout"]["chunk_examples"] == fmt.CHUNK_EXAMPLES
    assert info["identity"]["model"] == "m" and not info["has_lm_head_bias"]
    assert info["final_norm"] == {
        "kind": "rmsnorm",
        "eps": 1e-5,
        "offset": 1.0,
        "softcap": None,
        "has_bias": False,
    }


def test_activation_arrays_hold_what_was_written_in_contract_layout(store, written):
    assert fmt.activation_arrays(store) == tuple(fmt.ACTIVATION_ARRAYS)
    for name, dims in fmt.ACTIVATION_ARRAYS.items():
        a = fmt.array(store, name)
        assert a.metadata.dimension_names == dims, name
        assert a.dtype == np.float32 and a.shape == written["arrays"][name].shape, name
        np.testing.assert_array_equal(a[...], written["arrays"][name])
        # a block is one chunk of each per-example array (resid: one shard of 128-example chunks)
        assert a.chunks[0] == (fmt.CHUNK_EXAMPLES if name == "resid" else BLOCK), name
    resid = fmt.array(store, "resid")
    assert resid.shards == (BLOCK, L, D) and resid.chunks == (fmt.CHUNK_EXAMPLES, 1, D)


def test_each_block_digest_is_the_sha256_of_its_activation_arrays(store, written):
    layout = fmt.layout_of(store)
    digests = [str(d) for d in fmt.array(store, "block_sha256")[...]]
    assert digests == written["digests"] and len(digests) == layout.n_blocks == 3
    for b in range(layout.n_blocks):
        sl = layout.block_slice(b)
        parts = [np.asarray(fmt.array(store, k)[sl]) for k in fmt.ACTIVATION_ARRAYS]
        assert fmt.sha256_bytes(*parts) == digests[b]
    assert fmt.written_mask(store).all() and fmt.blocks_todo(store) == []


def test_examples_and_the_lens_are_stored_as_data(store, written):
    meta = _meta()
    assert list(fmt.array(store, "example_id")[...]) == meta.example_id
    assert list(fmt.array(store, "subject")[...]) == meta.subject
    assert list(fmt.array(store, "category")[...]) == meta.category
    np.testing.assert_array_equal(fmt.array(store, "label")[...], meta.label)
    np.testing.assert_array_equal(fmt.array(store, "n_tokens")[...], meta.n_tokens)
    text = fmt.array(store, "choice_text")[...]
    mask = fmt.array(store, "choice_mask")[...]
    assert list(text[0]) == ["a", "b", "c", ""] and list(mask[0]) == [True, True, True, False]
    assert list(text[1]) == ["a", "b", "c", "d"] and mask[1].all()
    assert list(fmt.array(store, "choice")[...]) == ["A", "B", "C", "D"]
    np.testing.assert_array_equal(fmt.array(store, "answer_token_ids")[...], [10, 11, 12, 13])
    w_u = np.asarray(fmt.array(store, "W_U")[...])
    np.testing.assert_array_equal(w_u, written["w_u"])
    assert fmt.sha256_bytes(w_u) == fmt.attrs(store)["identity"]["w_u_sha256"]
    norm = fmt.norm_spec(store)
    np.testing.assert_array_equal(norm.weight, written["norm"].weight)
    assert (norm.kind, norm.eps, norm.offset, norm.bias) == ("rmsnorm", 1e-5, 1.0, None)


# --- the write protocol, on a local folder -------------------------------------------------


def _new(path: Path, **kw) -> zarr.Group:
    return fmt.create_store(
        path,
        kw.pop("layout", fmt.Layout(N, L, D, V, K, BLOCK)),
        _meta(),
        w_u=kw.pop("w_u", np.zeros((V, D), np.float32)),
        lm_head_bias=None,
        norm=NormSpec("layernorm", np.ones(D, np.float32), np.zeros(D, np.float32), 1e-5),
        answer_token_ids=np.arange(K),
        attrs={"identity": {}, "provenance": {}},
        **kw,
    )


def test_unwritten_blocks_are_nan_and_todo_per_shard(tmp_path):
    g = _new(tmp_path / "s.zarr")
    assert np.isnan(fmt.array(g, "resid")[...]).all()
    assert fmt.blocks_todo(g) == [0, 1, 2] and fmt.blocks_todo(g, (1, 2)) == [1]
    arrays = {k: v[256:] for k, v in _blocks(np.random.default_rng(1)).items()}
    fmt.write_block(g, 2, arrays)
    assert fmt.blocks_todo(g) == [0, 1] and fmt.blocks_todo(g, (0, 2)) == [0]
    assert fmt.written_mask(g).sum() == N - 256
    assert fmt.attrs(g)["status"] == {"created": True, "complete": False}


def test_a_block_of_the_wrong_shape_or_missing_an_array_is_refused_unwritten(tmp_path):
    g = _new(tmp_path / "s.zarr")
    arrays = {k: v[:BLOCK] for k, v in _blocks(np.random.default_rng(2)).items()}
    with pytest.raises(fmt.StoreError, match=r"block 1: missing arrays \['lens_entropy'\]"):
        fmt.write_block(g, 1, {k: v for k, v in arrays.items() if k != "lens_entropy"})
    with pytest.raises(fmt.StoreError, match=r"block 2: resid has shape \(128, 3, 8\), expected"):
        fmt.write_block(g, 2, arrays)  # block 2 holds 44 examples
    assert not fmt.written_mask(g).any() and str(fmt.array(g, "block_sha256")[1]) == ""


def test_a_store_without_an_optional_array_hashes_the_others(tmp_path):
    g = _new(tmp_path / "old.zarr", optional_arrays=())
    assert fmt.activation_arrays(g) == ("resid", "model_logits", "lens_logits", "lens_lse")
    arrays = {k: v[:BLOCK] for k, v in _blocks(np.random.default_rng(3)).items()}
    digest = fmt.write_block(g, 0, arrays)  # lens_entropy given but not stored, not hashed
    assert digest == fmt.sha256_bytes(*(arrays[k] for k in fmt.activation_arrays(g)))


def test_creation_refuses_an_existing_path_and_a_wrong_unembedding(tmp_path):
    _new(tmp_path / "s.zarr")
    with pytest.raises(fmt.StoreExistsError, match="--resume"):
        _new(tmp_path / "s.zarr")
    with pytest.raises(fmt.StoreError, match=r"W_U has shape \(3, 8\)"):
        _new(tmp_path / "t.zarr", w_u=np.zeros((3, D), np.float32))
    with pytest.raises(fmt.StoreError, match="multiple of 128"):
        fmt.Layout(N, L, D, V, K, 100)


def test_readers_refuse_another_format_version_and_a_group_that_is_no_store(tmp_path):
    g = _new(tmp_path / "s.zarr")
    info = fmt.attrs(g)
    g.attrs["layercal"] = {**info, "format_version": 2}
    with pytest.raises(fmt.StoreError, match="format version 2; this layercal reads version 1"):
        fmt.check_format(zarr.open_group(str(tmp_path / "s.zarr"), mode="r"), "s.zarr")
    plain = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(fmt.StoreError, match="not a layercal activation store"):
        fmt.check_format(plain, "plain.zarr")


def test_the_digest_is_of_little_endian_bytes_whatever_the_input_order():
    a = np.arange(6, dtype="<f4").reshape(2, 3)
    assert fmt.sha256_bytes(a) == fmt.sha256_bytes(a.astype(">f4"))
    assert fmt.sha256_bytes(a) == fmt.sha256_bytes(np.asfortranarray(a))
    assert fmt.sha256_bytes(a) != fmt.sha256_bytes(a.T)


def test_finalize_consolidates_the_metadata(tmp_path, written):
    root = json.loads((written["path"] / "zarr.json").read_text())
    assert "resid" in root["consolidated_metadata"]["metadata"]


def test_identity_differences_name_each_field():
    assert fmt.identity_diff({"a": 1, "b": 2}, {"a": 1, "b": 2}) == []
    assert fmt.identity_diff({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == [
        "b: store has 2, this run has 3",
        "c: store has None, this run has 4",
    ]


def test_a_matrix_hashed_slab_by_slab_has_the_digest_of_its_whole_bytes():
    """sha256_rows (W_U streamed from the model) equals sha256_bytes of the whole float32 matrix
    and the digest layercal recorded before W_U was streamed (sha256 of its ``tobytes()``), for
    any slab size, a last slab shorter than the others included: stores resume as before."""
    import hashlib

    w = np.random.default_rng(5).normal(size=(1000, 7)).astype(np.float32)
    before = hashlib.sha256(np.ascontiguousarray(w).astype("<f4").tobytes()).hexdigest()
    assert fmt.sha256_bytes(w) == before
    for step in (1, 3, 64, 999, 1000, 5000):
        assert fmt.sha256_rows(fmt.RowSource.of(w), step) == before, step
    assert fmt.sha256_rows(fmt.RowSource.of(w)) == before
    assert fmt.sha256_rows(fmt.RowSource.of(w[:-1])) != before


def test_w_u_from_a_row_source_is_written_slab_by_slab_as_the_whole_matrix_is(tmp_path):
    """A store created from a RowSource holds the same W_U, chunk objects byte for byte, as one
    created from the whole matrix; the source is asked for at most a slab of rows at a time,
    starting on chunk boundaries (no chunk written twice)."""
    vocab = 2 * fmt.W_U_SLAB_ROWS + 5  # two whole slabs and a short one
    w = np.random.default_rng(6).normal(size=(vocab, D)).astype(np.float32)
    asked: list[tuple[int, int]] = []

    def rows(i: int, j: int) -> np.ndarray:
        asked.append((i, j))
        return w[i:j].astype(np.float32)

    kw = {"layout": fmt.Layout(N, L, D, vocab, K, BLOCK)}
    whole = _new(tmp_path / "whole.zarr", w_u=w, **kw)
    streamed = _new(tmp_path / "streamed.zarr", w_u=fmt.RowSource((vocab, D), rows), **kw)
    np.testing.assert_array_equal(fmt.array(streamed, "W_U")[...], w)
    assert fmt.array(streamed, "W_U").chunks == fmt.array(whole, "W_U").chunks
    assert max(j - i for i, j in asked) <= fmt.W_U_SLAB_ROWS
    assert all(i % fmt.W_U_CHUNK_ROWS == 0 for i, _ in asked)
    assert sorted(asked) == [
        (i, min(i + fmt.W_U_SLAB_ROWS, vocab)) for i in range(0, vocab, fmt.W_U_SLAB_ROWS)
    ]
    objects = sorted(
        p.relative_to(tmp_path / "whole.zarr")
        for p in (tmp_path / "whole.zarr/W_U").rglob("*")
        if p.is_file()
    )
    assert len(objects) > 3
    for rel in objects:
        assert (tmp_path / "streamed.zarr" / rel).read_bytes() == (
            tmp_path / "whole.zarr" / rel
        ).read_bytes(), rel
