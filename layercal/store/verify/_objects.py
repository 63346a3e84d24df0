"""``store verify``, bytes half: the structure of each compressed object, below what zarr checks.

Some bytes of a compressed chunk do not reach the decoded values: the Blosc header's
compressed-size field, the out-of-bounds part of an edge chunk (zarr pads it with the fill
value and never returns it), and bits the zstd decoder ignores. A changed byte there decodes to
the same in-bounds values, so content hashes cannot see it; these checks do. The last one
re-encodes the decoded chunk and compares bytes: Blosc is deterministic when it runs without
its own threads (as zarr runs it, off the main thread), so this is only done when the running
numcodecs is the version that wrote the store (``canonical=True``). Objects are parsed as the format writes them:
``bytes`` + ``blosc`` codecs, optionally inside ``sharding_indexed`` (index at the end, crc32c).
Other codec pipelines are skipped (returned as a note, not a failure).
"""

from __future__ import annotations

import hashlib
import math
import struct
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import numpy as np
from numcodecs import Blosc
from numcodecs.checksum32 import CRC32C

from layercal.store._location import CARD, MANIFEST, Location
from layercal.store.verify.report import Report

BLOSC_HEADER = 16
EMPTY = 2**64 - 1  # shard index entry of an inner chunk that was never written
SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


@lru_cache(maxsize=1)
def _encoder() -> ThreadPoolExecutor:
    """A worker thread: numcodecs runs Blosc single-threaded (deterministic) off the main thread."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify-reencode")


class Unchecked(Exception):
    """The object uses a codec pipeline these checks do not parse."""


def _blosc(codecs: list[dict[str, Any]]) -> dict[str, Any]:
    names = [c.get("name") for c in codecs]
    if names != ["bytes", "blosc"]:
        raise Unchecked(f"codecs {names}")
    return dict(codecs[1].get("configuration", {}))


def _check_blosc(
    buf: bytes,
    cfg: dict[str, Any],
    dtype: np.dtype,
    shape: tuple[int, ...],
    valid: tuple[int, ...],
    fill: Any,
    canonical: bool,
) -> str | None:
    """One Blosc-compressed chunk of ``shape`` whose leading ``valid`` extents are in bounds."""
    nbytes = math.prod(shape) * dtype.itemsize
    if len(buf) < BLOSC_HEADER:
        return f"{len(buf)} bytes, shorter than a Blosc header (truncated)"
    version, _, _, typesize = buf[:4]
    h_nbytes, h_block, h_cbytes = struct.unpack("<iii", buf[4:16])
    if version != 2 or typesize != dtype.itemsize:
        return f"Blosc header damaged (version {version}, typesize {typesize})"
    if h_nbytes != nbytes or h_cbytes != len(buf) or not 0 < h_block <= max(nbytes, 1):
        return (
            f"Blosc header damaged: says {h_nbytes} bytes decoded / {h_cbytes} stored, block "
            f"{h_block}; the chunk holds {nbytes} / {len(buf)}"
        )
    codec = Blosc.from_config(
        {
            "cname": cfg.get("cname", "zstd"),
            "clevel": cfg.get("clevel", 5),
            "shuffle": SHUFFLE.get(str(cfg.get("shuffle")), 1),
            "blocksize": cfg.get("blocksize", 0),
        }
    )
    try:
        raw = codec.decode(buf)
    except Exception as e:  # numcodecs raises RuntimeError/ValueError on damaged streams
        return f"cannot be decompressed: {type(e).__name__}: {e}"
    values = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(shape)
    pad = np.ones(shape, dtype=bool)
    pad[tuple(slice(0, v) for v in valid)] = False
    if pad.any():
        rest = values[pad]  # compared bit for bit: a changed NaN payload is still a change
        if rest.tobytes() != np.full(rest.shape, fill, dtype=rest.dtype).tobytes():
            return "bytes beyond the array's edge changed (the padding is not the fill value)"
    if not canonical:
        return None
    # typesize = the dtype's item size, as zarr passes it: encode the values, not raw uint8
    again = _encoder().submit(codec.encode, np.frombuffer(raw, dtype=dtype)).result()
    if bytes(again) != buf:
        return (
            "bytes differ from the encoding of its own values (a byte the decoder ignores changed)"
        )
    return None


def _fill(meta: dict[str, Any]) -> Any:
    value = meta.get("fill_value")
    return float("nan") if value == "NaN" else value


def check_object(
    meta: dict[str, Any], coords: tuple[int, ...], buf: bytes, *, canonical: bool = False
) -> str | None:
    """Check the stored object at grid ``coords`` of the array with metadata ``meta``.

    Returns a description of what is wrong, or None; raises :class:`Unchecked` for codec
    pipelines other than the format's."""
    shape = tuple(meta["shape"])
    outer = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
    dtype = np.dtype(meta["data_type"])
    codecs = meta["codecs"]
    start = tuple(c * n for c, n in zip(coords, outer))
    if codecs[0].get("name") != "sharding_indexed":
        valid = tuple(max(0, min(n, s - o)) for n, s, o in zip(outer, shape, start))
        return _check_blosc(buf, _blosc(codecs), dtype, outer, valid, _fill(meta), canonical)
    conf = codecs[0]["configuration"]
    if conf.get("index_location", "end") != "end" or [
        c.get("name") for c in conf.get("index_codecs", [])
    ] != ["bytes", "crc32c"]:
        raise Unchecked("shard index layout")
    inner = tuple(conf["chunk_shape"])
    grid = tuple(o // i for o, i in zip(outer, inner))
    size = math.prod(grid) * 16 + 4
    if len(buf) < size:
        return f"{len(buf)} bytes, shorter than its shard index ({size}): truncated"
    try:
        index = np.frombuffer(CRC32C().decode(buf[-size:]), dtype="<u8").reshape(-1, 2)
    except Exception as e:
        return f"shard index damaged or truncated ({type(e).__name__}: {e})"
    end, cfg = len(buf) - size, _blosc(conf["codecs"])
    used = sorted((int(o), int(n)) for o, n in index if o != EMPTY)
    pos = 0
    for o, n in used:  # inner chunks tile the data region: no gaps, overlaps or tail
        if o != pos:
            return f"shard index does not tile the data (chunk at byte {o}, expected {pos})"
        pos = o + n
    if pos != end:
        return f"shard data region is {end} bytes but its chunks cover {pos}"
    for flat, (o, n) in enumerate(index):
        ic = np.unravel_index(flat, grid)
        istart = tuple(s + int(c) * i for s, c, i in zip(start, ic, inner))
        valid = tuple(max(0, min(i, s - b)) for i, s, b in zip(inner, shape, istart))
        if o == EMPTY:
            if all(valid):
                return f"inner chunk {tuple(int(c) for c in ic)} is missing from the shard"
            continue
        problem = _check_blosc(buf[o : o + n], cfg, dtype, inner, valid, _fill(meta), canonical)
        if problem:
            return f"inner chunk {tuple(int(c) for c in ic)}: {problem}"
    return None


def check_manifest(loc: Location, rep: Report) -> None:
    """Every object listed in the manifest (pack/publish) is present with its size and sha256."""
    if not loc.exists(MANIFEST):
        rep.notes.append(f"no {MANIFEST} (written by pack/publish): objects not hashed one by one")
        return
    try:
        files = loc.read_json(MANIFEST)["files"]
    except (ValueError, KeyError, OSError) as e:
        rep.fail(MANIFEST, f"unreadable: {e}")
        return
    bad = 0
    for key, rec in sorted(files.items()):
        if not loc.exists(key):
            rep.fail(key, "listed in the manifest but missing")
            bad += 1
            continue
        h = hashlib.sha256()
        try:
            for piece in loc.open_chunks(key):
                h.update(piece)
        except Exception as e:  # e.g. a zip member whose CRC no longer matches
            rep.fail(key, f"cannot be read: {type(e).__name__}: {e}")
            bad += 1
            continue
        if loc.sizes()[key] != rec["size"] or h.hexdigest() != rec["sha256"]:
            rep.fail(
                key,
                f"size or sha256 differs from the manifest ({loc.sizes()[key]} vs {rec['size']} bytes)",
            )
            bad += 1
    extra = sorted(set(loc.sizes()) - set(files) - {MANIFEST, CARD})
    if extra:
        rep.notes.append(f"objects not in the manifest (added later?): {', '.join(extra[:5])}")
    rep.notes.append(f"manifest: {len(files) - bad}/{len(files)} objects match size and sha256")
