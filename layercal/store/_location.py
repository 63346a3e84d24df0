"""Where a store lives: a local folder, a packed ``.zip`` or an fsspec URL, seen two ways.

The store tools need the store both as Zarr (to decode arrays) and as plain files (to list
objects, measure sizes, hash and copy whole shards). :class:`Location` gives both views of one
place, read-only. Keys are the store's own object names (``resid/c/0/0/0``, ``zarr.json``).
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec
import zarr
from fsspec.core import url_to_fs
from zarr.abc.store import Store

from layercal import format as fmt

MANIFEST = "layercal-manifest.json"  # sha256 + size of every object, written by pack/publish
CARD = "README.md"  # the dataset card written by pack/publish


def is_url(path: str) -> bool:
    """True for fsspec URLs (``s3://``, ``memory://``); False for local paths and ``file://``."""
    return "://" in path and not path.startswith("file://")


def local_path(path: str) -> str:
    """A local path with any ``file://`` prefix removed."""
    return path[len("file://") :] if path.startswith("file://") else path


def is_zip(path: str) -> bool:
    """A packed store (``layercal store pack``): a local file ending in ``.zip``."""
    return not is_url(path) and local_path(path).endswith(".zip")


@dataclass
class Location:
    """A store location opened read-only. ``url``: as the user gave it."""

    url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.fs: fsspec.AbstractFileSystem
        if is_zip(self.url):
            path = local_path(self.url)
            if not os.path.isfile(path):
                raise fmt.StoreError(f"no packed store at {path}: the file does not exist.")
            # a fresh instance: fsspec caches by arguments, and a re-packed zip has new contents
            self.fs = fsspec.filesystem("zip", fo=path, skip_instance_cache=True)
            self.root = ""
        elif is_url(self.url):
            self.fs, self.root = url_to_fs(self.url, **dict(self.storage_options))
        else:
            path = os.path.abspath(local_path(self.url))
            if not os.path.isdir(path):
                raise fmt.StoreError(f"no store at {path}: the folder does not exist.")
            self.fs, self.root = fsspec.filesystem("file"), path
        self.root = self.root.rstrip("/")
        self._sizes: dict[str, int] | None = None

    def zarr_store(self) -> Store:
        """The location as a read-only Zarr store."""
        if is_zip(self.url):
            return zarr.storage.ZipStore(local_path(self.url), mode="r")
        if is_url(self.url):
            return zarr.storage.FsspecStore.from_url(
                self.url, storage_options=dict(self.storage_options) or None, read_only=True
            )
        return zarr.storage.LocalStore(os.path.abspath(local_path(self.url)), read_only=True)

    def open_group(self, *, consolidated: bool | None = False) -> zarr.Group:
        """The root group; ``consolidated=False`` reads each array's own ``zarr.json``, None
        uses the consolidated metadata when there is some (one read on remote stores)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "consolidated metadata is not in the v3 spec"
            return zarr.open_group(
                self.zarr_store(), mode="r", zarr_format=3, use_consolidated=consolidated
            )

    def full(self, key: str) -> str:
        """The filesystem path of object ``key``."""
        return f"{self.root}/{key}" if self.root else key

    def sizes(self) -> dict[str, int]:
        """Every object of the store -> its size in bytes (listed once, then cached)."""
        if self._sizes is None:
            found = self.fs.find(self.root, detail=True)
            prefix = f"{self.root}/" if self.root else ""
            sizes = {}
            for p, info in found.items():
                if info.get("type", "file") != "file":
                    continue
                size = info.get("size")
                if size is None:  # an HTTP folder listing has no sizes: ask per object (HEAD)
                    with contextlib.suppress(OSError, ValueError):
                        size = self.fs.info(p).get("size")
                sizes[str(p)[len(prefix) :].lstrip("/")] = int(size or 0)
            self._sizes = sizes
        return self._sizes

    def exists(self, key: str) -> bool:
        return key in self.sizes()

    def read(self, key: str) -> bytes:
        """The bytes of object ``key`` (raises ``FileNotFoundError`` when absent)."""
        return bytes(self.fs.cat_file(self.full(key)))

    def read_json(self, key: str) -> dict[str, Any]:
        """Object ``key`` parsed as JSON; raises ``ValueError`` naming the key when it is not."""
        try:
            value = json.loads(self.read(key).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{key} is not valid JSON ({e})") from e
        if not isinstance(value, dict):
            raise ValueError(f"{key} holds JSON but not an object")
        return value

    def open_chunks(self, key: str, bufsize: int = 1 << 24) -> Iterator[bytes]:
        """The bytes of object ``key`` in pieces of at most ``bufsize`` (for big shards)."""
        with self.fs.open(self.full(key), "rb") as f:
            while piece := f.read(bufsize):
                yield piece


def chunk_key(arr: zarr.Array, coords: tuple[int, ...]) -> str:
    """The object name of the stored chunk (or shard) at grid ``coords`` of ``arr``."""
    return f"{arr.path}/{arr.metadata.encode_chunk_key(coords)}"  # type: ignore[union-attr]


def human_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover
