"""Store tools on real Zarr stores built with layercal.format from synthetic data.

300 examples x 5 depths x 32 hidden, vocabulary 64, 4 choices, blocks of 128 (3 blocks, the last
one partial): info, verify (a flipped byte in every kind of object), pack, publish, merge.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Iterable
from pathlib import Path

import fsspec
import numcodecs
import numpy as np
import pytest
import xarray as xr
import zarr

from analyze.lens.store import open_store
from layercal import format as fmt
from layercal.lens import NormSpec, lens_logits
from layercal.store import MANIFEST, merge, pack, publish, store_info, verify_store
from layercal.store.cli import main as store_main
from layercal.testing import example_meta, synthetic_store

N, L, D, V, K, BLOCK = 300, 5, 32, 64, 4, 128
IDS = [10, 11, 12, 13]
TEMPLATE = '{"name":"lm-eval-mmlu","item":"{question}\\nAnswer:"}'
LAYOUT = fmt.Layout(N, L, D, V, K, BLOCK)
BLOCK_ARRAYS = tuple(fmt.ACTIVATION_ARRAYS)
OLD_ARRAYS = ("resid", "model_logits", "lens_logits", "lens_lse")  # before lens_entropy


def _data() -> dict:
    rng = np.random.default_rng(0)
    w_u = rng.normal(size=(V, D)).astype(np.float32)
    norm = NormSpec("rmsnorm", rng.normal(1.0, 0.2, D).astype(np.float32), None, 1e-5)
    blocks = []
    for b in range(LAYOUT.n_blocks):
        sl = LAYOUT.block_slice(b)
        resid = rng.normal(size=(sl.stop - sl.start, L, D)).astype(np.float32)
        z = lens_logits(resid, w_u[IDS], norm)
        full = lens_logits(resid, w_u, norm)
        lse = np.log(np.exp(full - full.max(-1, keepdims=True)).sum(-1)) + full.max(-1)
        p = np.exp(full - lse[..., None])
        blocks.append(
            {
                "resid": resid,
                "model_logits": z[:, -1],
                "lens_logits": z,
                "lens_lse": lse,
                "lens_entropy": -(p * np.log(p)).sum(-1),
            }
        )
    return {"w_u": w_u, "norm": norm, "blocks": blocks}


DATA = _data()


def attrs(**identity_changes) -> dict:
    tsha = hashlib.sha256(TEMPLATE.encode()).hexdigest()
    identity = {
        "model": "tiny-test",
        "revision": None,
        "dtype": "float32",
        "template_sha256": tsha,
        "dataset": "mmlu",
        "split": "test",
        "dataset_sha256": "ab" * 32,
        "answer_token_ids": IDS,
        "w_u_sha256": fmt.sha256_bytes(DATA["w_u"]),
    }
    identity.update(identity_changes)
    provenance = {
        "model": {
            "model": identity["model"],
            "hub_id": "test/tiny",
            "dtype": "float32",
            "revision": None,
            "architecture": "LlamaForCausalLM",
        },
        "dataset": {
            "name": "mmlu",
            "split": "test",
            "category": "stem",
            "subjects": ["anatomy", "astronomy"],
            "n_examples": N,
            "content_sha256": identity["dataset_sha256"],
        },
        "template": {"name": "lm-eval-mmlu", "text": TEMPLATE, "sha256": tsha},
        "libraries": {"zarr": zarr.__version__, "numcodecs": numcodecs.__version__},
        "layercal_git_commit": "0123abc",
        "answer_tokens": [" A", " B", " C", " D"],
    }
    return {"identity": identity, "provenance": provenance, "runs": []}


def build(
    path: Path,
    blocks: Iterable[int],
    shard: str = "0/1",
    optional_arrays: Iterable[str] = fmt.OPTIONAL_ACTIVATION_ARRAYS,
    **identity_changes,
) -> Path:
    """A store at ``path`` with ``blocks`` written (finalized when all are).

    ``optional_arrays=()``: a store as layercal wrote them before ``lens_entropy``."""
    meta = example_meta(
        np.arange(N) % 2,
        ["anatomy" if i % 2 else "astronomy" for i in range(N)],
        categories=["stem"] * N,
        example_ids=[f"mmlu/test/{i}" for i in range(N)],
        questions=[f"question {i}?" for i in range(N)],
        choices=[["w", "x", "y", "z"] if i % 3 else ["yes", "no"] for i in range(N)],
        n_tokens=np.arange(N) % 50 + 10,
    )
    a = attrs(**identity_changes)
    a["runs"] = [{"started": "2026-01-01T00:00:00", "host": f"host-{shard}", "shard": shard}]
    return synthetic_store(
        path,
        meta=meta,
        n_depth=L,
        w_u=DATA["w_u"],
        norm=DATA["norm"],
        answer_ids=np.array(IDS),
        blocks=lambda b, _: DATA["blocks"][b],
        attrs=a,
        block=BLOCK,
        write=blocks,
        finalize={"finished": "2026-01-01T00:01:00"},
        optional_arrays=optional_arrays,
    )


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("ref") / "ref.zarr", range(LAYOUT.n_blocks))


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def objects(store: Path) -> list[str]:
    return sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file())


def flip(path: Path, pos: int, mask: int = 0xFF) -> None:
    data = bytearray(path.read_bytes())
    data[pos] ^= mask
    path.write_bytes(bytes(data))


def all_values(store) -> dict[str, np.ndarray]:
    g = zarr.open_group(store, mode="r")
    return {k: np.asarray(g[k][...]) for k in sorted(g.array_keys())}


def assert_same_values(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        if a[k].dtype.kind == "f":
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            assert a[k].tolist() == b[k].tolist(), k


def problems_text(rep) -> str:
    return "\n".join(rep.lines())


# ---------------------------------------------------------------- info


def test_info_one_screen(ref, capsys):
    assert store_main(["store", "info", str(ref)]) == 0
    out = capsys.readouterr().out
    assert "tiny-test" in out and "mmlu/test" in out and "licence MIT" in out
    assert "lm-eval-mmlu" in out and "300/300 examples, 3/3 blocks written" in out
    assert "resid" in out and "shards (128, 5, 32)" in out and "compression" in out
    assert len(out.splitlines()) <= 40


def test_info_json_sizes_completeness_and_derived(ref, tmp_path, capsys):
    store = copy(ref, tmp_path / "s.zarr")
    zarr.open_group(store, mode="r+").create_group("derived").create_array(
        "ece", shape=(L,), dtype="float32"
    )
    assert store_main(["store", "info", str(store), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    files = {k: (store / k).stat().st_size for k in objects(store)}
    assert d["size"]["files"] == len(files)
    assert d["size"]["stored_bytes"] == sum(files.values())
    resid = next(r for r in d["arrays"] if r["name"] == "resid")
    assert resid["shape"] == [N, L, D] and resid["dtype"] == "float32"
    assert resid["nbytes"] == N * L * D * 4
    assert resid["stored_bytes"] == sum(v for k, v in files.items() if k.startswith("resid/c/"))
    s = d["size"]
    assert s["compression_ratio"] == pytest.approx(s["numeric_nbytes"] / s["numeric_stored_bytes"])
    assert d["derived"] == ["derived"] and d["consolidated"] is True
    assert d["dataset"]["licence"] == "MIT" and d["template"]["name"] == "lm-eval-mmlu"
    assert d["provenance"]["runs"][0]["host"] == "host-0/1"


def test_info_partial_store_lists_missing_blocks(tmp_path):
    d = store_info(str(build(tmp_path / "p.zarr", [0, 2])))
    c = d["completeness"]
    assert c["written_examples"] == BLOCK + (N - 2 * BLOCK)
    assert c["missing_blocks"] == [1] and c["written_blocks"] == 2
    assert d["consolidated"] is False


# ---------------------------------------------------------------- verify


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
    import layercal.store._verify_attr as attr

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


# ---------------------------------------------------------------- pack


def test_pack_opens_directly_with_identical_arrays(ref, tmp_path, capsys):
    out = tmp_path / "ref.zip"
    assert store_main(["store", "pack", str(ref), "-o", str(out)]) == 0
    assert "members" in capsys.readouterr().out
    with zipfile.ZipFile(out) as zf:
        infos = zf.infolist()
        names = {i.filename for i in infos}
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        assert {"zarr.json", "README.md", MANIFEST, "resid/c/1/0/0"} <= names
        assert "Zarr" in zf.read("README.md").decode()
    assert names - {"README.md", MANIFEST} == set(objects(ref))
    packed, local = open_store(str(out)), open_store(str(ref))
    xr.testing.assert_identical(packed, local)
    assert_same_values(all_values(zarr.storage.ZipStore(out, mode="r")), all_values(ref))
    rep = verify_store(str(out))
    assert rep.ok and any("manifest" in n and "match" in n for n in rep.notes), problems_text(rep)
    again = tmp_path / "again" / "ref.zip"
    pack(str(ref), again)
    assert again.read_bytes() == out.read_bytes()  # same store, same bytes
    with pytest.raises(fmt.StoreError, match="--overwrite"):
        pack(str(ref), out)


def test_pack_refuses_partial_and_damaged_stores(ref, tmp_path):
    partial = build(tmp_path / "p.zarr", [0])
    with pytest.raises(fmt.StoreError, match="--allow-partial"):
        pack(str(partial), tmp_path / "p.zip")
    assert pack(str(partial), tmp_path / "p.zip", allow_partial=True).files > 0
    damaged = copy(ref, tmp_path / "d.zarr")
    flip(damaged / "lens_lse/c/1/0", 40)
    with pytest.raises(fmt.StoreError, match="block 1"):
        pack(str(damaged), tmp_path / "d.zip")


# ---------------------------------------------------------------- publish


def test_publish_to_a_folder_with_card_manifest_and_consolidated_metadata(ref, tmp_path, capsys):
    dest = tmp_path / "hub" / "tiny.zarr"
    assert store_main(["store", "publish", str(ref), str(dest)]) == 0
    out = capsys.readouterr().out
    written = objects(dest)
    assert f"{len(written)} files" in out
    assert set(written) == set(objects(ref)) | {"README.md", MANIFEST}
    assert "consolidated_metadata" in json.loads((dest / "zarr.json").read_text())
    card = (dest / "README.md").read_text()
    assert card.startswith("---\nlicense: mit\n")
    for text in ("tiny-test", "test/tiny", "mmlu", "anatomy", "lm-eval-mmlu", "**MIT**"):
        assert text in card, text
    assert f'xr.open_zarr("{dest}", consolidated=True)' in card
    assert "layercal-activation-store v1" in card and f"{len(written)} files" in card
    assert f"layercal store verify {dest}" in card
    xr.testing.assert_identical(open_store(str(dest)), open_store(str(ref)))
    rep = verify_store(str(dest))
    assert rep.ok and any(
        f"{len(written) - 2}/{len(written) - 2} objects match" in n for n in rep.notes
    )
    # a change nothing else records (a host name in the provenance) is caught by the manifest
    root = dest / "zarr.json"
    flip(root, root.read_text().index("host-0/1") + 5, 0x01)  # one bit: '0' -> '1'
    [p] = verify_store(str(dest)).problems
    assert p.where == "zarr.json" and "manifest" in p.what
    flip(root, 3)  # invalid JSON: reported, and the manifest still checked
    assert [p.where for p in verify_store(str(dest)).problems] == ["zarr.json", "zarr.json"]


def test_publish_to_memory_url_opens_remotely(ref):
    url = "memory://layercal-test/published/tiny.zarr"
    r = publish(str(ref), url)
    fs = fsspec.filesystem("memory")
    assert r.files == len(fs.find("/layercal-test/published/tiny.zarr"))
    assert fs.cat_file("/layercal-test/published/tiny.zarr/README.md").startswith(b"---\nlicense")
    assert_same_values(all_values(url), all_values(ref))
    assert verify_store(url).ok
    xr.testing.assert_identical(open_store(url), open_store(str(ref)))
    fs.rm("/layercal-test", recursive=True)


def test_publish_refusals_overwrite_partial_and_file_count(ref, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "old.txt").write_text("x")
    with pytest.raises(fmt.StoreError, match="not empty.*--overwrite"):
        publish(str(ref), str(dest))
    r = publish(str(ref), f"file://{dest}", overwrite=True, warn_files=10)
    assert not (dest / "old.txt").exists() and r.warning and "--block-size" in r.warning
    partial = build(tmp_path / "p.zarr", [1])
    with pytest.raises(fmt.StoreError, match="incomplete.*--allow-partial"):
        publish(str(partial), str(tmp_path / "p-pub"))
    publish(str(partial), str(tmp_path / "p-pub"), allow_partial=True)
    root = json.loads((tmp_path / "p-pub" / "zarr.json").read_text())
    assert "consolidated_metadata" in root  # consolidated at the destination, source untouched
    assert "consolidated_metadata" not in json.loads((partial / "zarr.json").read_text())
    ds = open_store(str(tmp_path / "p-pub"), allow_partial=True)
    assert ds.sizes["example"] == BLOCK
    assert "complete: no: 128/300" in (tmp_path / "p-pub" / "README.md").read_text()


def test_dataset_licences():
    from layercal.store import dataset_licence

    assert dataset_licence("mmlu") == "MIT"
    assert dataset_licence("truthfulqa-mc1") == "Apache-2.0"
    assert dataset_licence("file") == "unknown"


# ---------------------------------------------------------------- merge


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
