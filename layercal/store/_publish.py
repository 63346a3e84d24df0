"""``layercal store pack`` (one ``.zip`` to send) and ``store publish`` (any fsspec destination).

Both copy whole objects (shards and chunks, already compressed) byte for byte, in an order that
leaves the destination unreadable until it is whole: data objects first, then the arrays'
``zarr.json``, then the root ``zarr.json`` with consolidated metadata (one read for remote
readers), then the dataset card (README.md) and a manifest of every object's size and sha256
that ``store verify`` checks. Both refuse incomplete stores (unless ``allow_partial``), stores
that fail ``verify`` (unless ``verify=False``) and existing targets (unless ``overwrite``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zarr
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from layercal import format as fmt
from layercal.store._card import dataset_card
from layercal.store._info import store_info
from layercal.store._location import CARD, MANIFEST, Location, local_path
from layercal.store.verify import verify_store

WARN_FILES = 10_000  # Hugging Face advises < 10k files per folder; object stores bill per request
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed member times: the same store packs to the same bytes


@dataclass(frozen=True)
class Shipped:
    """What pack or publish wrote: where, how many objects (card and manifest included), bytes."""

    target: str
    files: int
    stored_bytes: int
    warning: str | None = None


def copy_order(keys: Iterable[str]) -> list[str]:
    """Data objects, then member ``zarr.json``; the root, card and manifest are written apart."""
    keys = [k for k in keys if k not in ("zarr.json", CARD, MANIFEST)]
    meta = sorted(k for k in keys if k.endswith("/zarr.json"))
    return sorted(set(keys) - set(meta)) + meta


def consolidated_root(loc: Location) -> bytes:
    """The root ``zarr.json`` with consolidated metadata (made by zarr from a metadata copy)."""
    if "consolidated_metadata" in loc.read_json("zarr.json"):
        return loc.read("zarr.json")
    with tempfile.TemporaryDirectory() as tmp:
        for key in loc.sizes():
            if key == "zarr.json" or key.endswith("/zarr.json"):
                target = Path(tmp, key)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(loc.read(key))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "consolidated metadata is not in the v3 spec"
            zarr.consolidate_metadata(tmp)
        return Path(tmp, "zarr.json").read_bytes()


def check_source(
    url: str,
    storage_options: Mapping[str, Any] | None,
    *,
    allow_partial: bool,
    verify: bool,
    action: str,
) -> dict[str, Any]:
    """``store_info`` of a store fit to ship; raises ``StoreError`` saying what to do otherwise."""
    info = store_info(url, storage_options)
    c = info["completeness"]
    if c["written_examples"] < c["n_examples"] and not allow_partial:
        raise fmt.StoreError(
            f"refusing to {action} {url}: it is incomplete ({c['written_examples']}/"
            f"{c['n_examples']} examples; blocks {c['missing_blocks'][:10]} missing). Finish it "
            "with `layercal extract ... --resume`, combine shard stores with `layercal store "
            "merge`, or pass --allow-partial to ship it as it is."
        )
    if verify:
        rep = verify_store(url, storage_options=storage_options)
        if not rep.ok:
            raise fmt.StoreError(
                f"refusing to {action} {url}: `layercal store verify` fails:\n"
                + "\n".join(rep.lines())
                + "\nRe-extract or repair the store, or pass --no-verify to copy it as it is."
            )
    return info


def manifest_bytes(records: Mapping[str, tuple[int, str]]) -> bytes:
    """The manifest: ``{"files": {key: {"size", "sha256"}}}`` for every object but card/manifest."""
    files = {k: {"size": size, "sha256": digest} for k, (size, digest) in sorted(records.items())}
    doc = {"format": "layercal-manifest", "version": 1, "algorithm": "sha256", "files": files}
    return json.dumps(doc, indent=1).encode("utf-8")


def pack(
    store: str,
    out: str | os.PathLike[str],
    *,
    allow_partial: bool = False,
    overwrite: bool = False,
    verify: bool = True,
    storage_options: Mapping[str, Any] | None = None,
) -> Shipped:
    """Pack ``store`` into one zip at ``out``, members stored uncompressed (ZIP_STORED: the
    chunks are compressed already) under their Zarr keys, as ``zarr.storage.ZipStore`` reads it.
    Written to ``out.partial`` and renamed, so ``out`` is never a half-written zip."""
    out = Path(local_path(os.fspath(out)))
    if out.suffix != ".zip":
        raise fmt.StoreError(f"{out}: name the packed store FILE.zip (readers recognise .zip)")
    if out.exists() and not overwrite:
        raise fmt.StoreError(f"{out} exists; pass --overwrite to replace it, or choose another -o")
    info = check_source(
        store, storage_options, allow_partial=allow_partial, verify=verify, action="pack"
    )
    loc = Location(store, storage_options or {})
    records: dict[str, tuple[int, str]] = {}
    tmp = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:

        def put(key: str, pieces: Iterable[bytes], size: int) -> None:
            member = zipfile.ZipInfo(key, date_time=ZIP_EPOCH)
            member.file_size = size
            h = hashlib.sha256()
            with zf.open(member, "w") as fo:
                for piece in pieces:
                    fo.write(piece)
                    h.update(piece)
            records[key] = (size, h.hexdigest())

        for key in copy_order(loc.sizes()):
            put(key, loc.open_chunks(key), loc.sizes()[key])
        root = consolidated_root(loc)
        put("zarr.json", [root], len(root))
        total = sum(size for size, _ in records.values())
        card = dataset_card(info, out.name, files=len(records) + 2, stored_bytes=total, packed=True)
        zf.writestr(zipfile.ZipInfo(CARD, date_time=ZIP_EPOCH), card.encode("utf-8"))
        zf.writestr(zipfile.ZipInfo(MANIFEST, date_time=ZIP_EPOCH), manifest_bytes(records))
    os.replace(tmp, out)
    return Shipped(str(out), len(records) + 2, out.stat().st_size)


def publish(
    store: str,
    dest: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    source_storage_options: Mapping[str, Any] | None = None,
    allow_partial: bool = False,
    overwrite: bool = False,
    verify: bool = True,
    warn_files: int = WARN_FILES,
) -> Shipped:
    """Copy ``store`` to the fsspec destination ``dest`` (local folder, ``file://``, ``s3://``,
    ``gs://``, ``hf://``, ``memory://``) with consolidated metadata, README.md and manifest.

    ``storage_options`` are for ``dest`` (credentials, endpoint); they are never written out.
    Refuses a non-empty ``dest`` unless ``overwrite`` (which first deletes what is there)."""
    fs, root = url_to_fs(dest, **dict(storage_options or {}))
    root = root.rstrip("/")
    if fs.exists(root) and (fs.isfile(root) or fs.find(root)):
        if not overwrite:
            raise fmt.StoreError(
                f"refusing to publish into {dest}: it is not empty. Choose an empty destination, "
                "or pass --overwrite to delete what is there first."
            )
        fs.rm(root, recursive=True)
    info = check_source(
        store, source_storage_options, allow_partial=allow_partial, verify=verify, action="publish"
    )
    loc = Location(store, source_storage_options or {})
    local = isinstance(fs, LocalFileSystem)
    records: dict[str, tuple[int, str]] = {}

    def put(key: str, pieces: Iterable[bytes]) -> None:
        path = f"{root}/{key}"
        if local:  # object stores have no folders; a local destination needs them
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        h, size = hashlib.sha256(), 0
        with fs.open(path, "wb") as fo:
            for piece in pieces:
                fo.write(piece)
                h.update(piece)
                size += len(piece)
        records[key] = (size, h.hexdigest())

    for key in copy_order(loc.sizes()):
        put(key, loc.open_chunks(key))
    put("zarr.json", [consolidated_root(loc)])
    files = len(records) + 2
    total = sum(size for size, _ in records.values())
    card = dataset_card(info, dest, files=files, stored_bytes=total)
    manifest = manifest_bytes(records)
    fs.pipe_file(f"{root}/{CARD}", card.encode("utf-8"))
    fs.pipe_file(f"{root}/{MANIFEST}", manifest)
    total += len(card.encode("utf-8")) + len(manifest)
    warning = None
    if files > warn_files:
        warning = (
            f"{files} files at {dest}: above {warn_files}, which hubs (Hugging Face) and object "
            "stores handle badly. Re-extract with a larger --block-size (fewer, larger shards)."
        )
    return Shipped(dest, files, total, warning)
