"""Opening activation stores for analysis: lazily, read-only, local or remote.

``open_store`` gives a labelled :class:`xarray.Dataset` backed by dask, with chunks sized for
analysis (whole layers of many examples), not the tiny inner Zarr chunks.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import polars as pl
import xarray as xr
import zarr
from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype

from layercal import format as fmt
from layercal.lens import NormSpec

DEFAULT_CHUNKS = {
    "example": 2048,
    "layer": 1,
    "hidden": -1,
    "choice": -1,
    "vocab": 8192,
    "block": -1,
}
WHOLE_OBJECT_CACHE_BYTES = 256 << 20  # see _WholeObjects


class IncompleteStoreError(fmt.StoreError):
    """The store is missing examples (an unfinished extraction)."""


def open_store(
    path_or_url: str | os.PathLike[str],
    *,
    chunks: Mapping[str, int] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    allow_partial: bool = False,
) -> xr.Dataset:
    """Open a store read-only as a labelled Dataset.

    ``path_or_url``: a local path or an fsspec URL (``s3://``, ``gs://``, ``hf://``,
    ``http(s)://``, ``memory://``) with ``storage_options``. Refuses unfinished stores unless
    ``allow_partial``, in which case only written examples are kept.
    """
    url = os.fspath(path_or_url)
    ch = dict(DEFAULT_CHUNKS)
    ch.update(chunks or {})
    # options are for URLs; a local path ignores them (one command may mix local and remote stores)
    so = dict(storage_options or {}) if "://" in url else {}
    store: Any = url
    if url.endswith(".zip") and "://" not in url:  # one-file store from `layercal store pack`
        store = zarr.storage.ZipStore(url, mode="r")
    elif _ignores_ranges(url, so):
        fs_store = zarr.storage.FsspecStore.from_url(url, storage_options=so, read_only=True)
        store, so = _WholeObjects(fs_store), {}
    try:
        group = zarr.open_group(store, mode="r", storage_options=so or None)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as e:
        raise fmt.StoreError(f"no layercal store at {url}: {e}") from e
    info = fmt.check_format(group, url)
    # finished stores carry consolidated metadata (one read for remote readers); unfinished don't
    consolidated = bool(info.get("status", {}).get("complete"))
    ds = xr.open_zarr(
        store, chunks=None, storage_options=so or None, consolidated=consolidated, zarr_format=3
    )
    ds = ds.chunk({k: v for k, v in ch.items() if k in ds.dims})
    written = fmt.written_mask(group)
    if not written.all():
        n_missing = int((~written).sum())
        if not allow_partial:
            raise IncompleteStoreError(
                f"{url} is missing {n_missing} of {written.size} examples (the extraction did not "
                "finish). Finish it with `layercal extract ... --resume`, or pass --allow-partial "
                "to analyse only the written examples."
            )
        ds = ds.isel(example=np.flatnonzero(written))
    ds.attrs["layercal"] = info
    return ds


def norm_spec_of(ds: xr.Dataset) -> NormSpec:
    """The final norm recorded in the store, as data."""
    fn = ds.attrs["layercal"]["final_norm"]
    bias = ds["final_norm_bias"].values if fn["has_bias"] else None
    return fmt.norm_spec_from(fn, ds["final_norm_weight"].values, bias)


def examples_frame(ds: xr.Dataset) -> pl.DataFrame:
    """Per-example metadata as a polars DataFrame, joinable on ``example_id``."""
    mask = ds["choice_mask"].values
    return pl.DataFrame(
        {
            "example_id": [str(x) for x in ds["example_id"].values.tolist()],
            "subject": [str(x) for x in ds["subject"].values.tolist()],
            "category": [str(x) for x in ds["category"].values.tolist()],
            "label": ds["label"].values.astype(np.int64),
            "n_choices": mask.sum(axis=1).astype(np.int64),
            "n_tokens": ds["n_tokens"].values.astype(np.int64),
            "question": [str(x) for x in ds["question"].values.tolist()],
        }
    )


def store_hash(ds: xr.Dataset) -> str:
    """A short id of what the store holds: model, data, template and W_U fingerprints."""
    import hashlib
    import json

    ident = ds.attrs["layercal"]["identity"]
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def _ignores_ranges(url: str, storage_options: Mapping[str, Any]) -> bool:
    """True for an http(s) server that answers a byte-range request with the whole object
    (``python -m http.server`` does). fsspec hands such a reply on as if it were the range
    (fsspec issue #1626), which would give zarr's sharded reads the wrong bytes."""
    if not url.startswith(("http://", "https://")):
        return False
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(url, **storage_options)
    try:
        head = fs.cat_file(f"{root.rstrip('/')}/zarr.json", start=0, end=2)
    except (OSError, ValueError):  # no store there: zarr reports it next
        return False
    return len(head) != 2


class _WholeObjects(zarr.storage.WrapperStore[Store]):
    """A store over a server that ignores byte ranges: it fetches whole objects and cuts the
    ranges locally. The last objects fetched for a range (up to WHOLE_OBJECT_CACHE_BYTES) are
    kept, so a shard's index and its inner chunks cost one download; whole-object reads (a full
    shard, metadata) are not kept. The cache is not pickled (dask workers start empty)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._cache: OrderedDict[str, Buffer] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {"_store": self._store}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["_store"])  # type: ignore[misc]

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        if byte_range is None:
            return await self._store.get(key, prototype)
        buf = self._cache.get(key)
        if buf is None:
            buf = await self._store.get(key, prototype)
            if buf is None:
                return None
            self._keep(key, buf)
        n = len(buf)
        if isinstance(byte_range, RangeByteRequest):
            return buf[byte_range.start : byte_range.end]
        if isinstance(byte_range, OffsetByteRequest):
            return buf[byte_range.offset : n]
        return buf[max(0, n - byte_range.suffix) : n]

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        return [await self.get(key, prototype, r) for key, r in key_ranges]

    def _keep(self, key: str, buf: Buffer) -> None:
        if len(buf) > WHOLE_OBJECT_CACHE_BYTES:
            return
        self._cache[key] = buf
        while sum(len(b) for b in self._cache.values()) > WHOLE_OBJECT_CACHE_BYTES:
            self._cache.popitem(last=False)
