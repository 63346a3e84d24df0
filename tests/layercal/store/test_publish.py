"""``layercal store pack`` and ``publish``: one .zip opened directly, any fsspec destination with
a dataset card and a manifest, and their refusals."""

from __future__ import annotations

import json
import warnings
import zipfile

import fsspec
import pytest
import xarray as xr
import zarr

from analyze.lens.store import open_store
from layercal import format as fmt
from layercal.store import MANIFEST, pack, publish, verify_store
from layercal.store.cli import main as store_main
from tests.layercal.store.fixtures import (
    BLOCK,
    all_values,
    assert_same_values,
    build,
    copy,
    flip,
    objects,
    problems_text,
)


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
    # the card's layercal snippet runs as written, on the current import path (no warning)
    snippet = card.split("```python\n")[2].split("```")[0]
    assert snippet.startswith("from analyze import open_store\n")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", r"analyze\.\w+ is deprecated", DeprecationWarning)
        exec(snippet, {})
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
