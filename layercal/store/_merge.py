"""``layercal store merge``: shard stores written by separate machines -> one store.

Each input is a full pre-allocated store of one extraction in which only some blocks are written
(``layercal extract --shard i/n`` into separate paths). A block is whole objects (one ``resid``
shard, one chunk of each other activation array, its ``written`` and ``block_sha256`` chunks),
so merging copies objects byte for byte, never re-encodes. Refused: inputs of different
extractions (identity), layouts, or per-example data; a block written in two inputs with
different content. The output is finalized (consolidated, status complete) when every block is in.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from layercal import format as fmt
from layercal.store._info import block_status
from layercal.store._location import CARD, MANIFEST, Location, chunk_key, local_path

# every one a store may have
BLOCK_ARRAYS = (*fmt.ACTIVATION_ARRAYS, *fmt.CAPTURE_ARRAYS, "written", "block_sha256")
MUST_MATCH = ("format_version", "layout", "final_norm", "has_lm_head_bias")


@dataclass(frozen=True)
class Merged:
    """The merge result: block -> input it was copied from, and blocks no input had."""

    out: str
    sources: dict[int, str]
    missing: list[int]

    @property
    def complete(self) -> bool:
        return not self.missing


def block_keys(group: zarr.Group, b: int) -> list[str]:
    """The objects that hold block ``b``: one per activation array the store has (an older store
    lacks the optional ones), ``written``, ``block_sha256``."""
    keys = []
    for name in (*fmt.activation_arrays(group), "written", "block_sha256"):
        a = fmt.array(group, name)
        keys.append(chunk_key(a, (b,) + (0,) * (a.ndim - 1)))
    return keys


def _refuse(msg: str) -> fmt.StoreError:
    return fmt.StoreError(f"refusing to merge: {msg}")


def _check_same_extraction(urls: Sequence[str], infos: Sequence[dict[str, Any]]) -> None:
    first = infos[0]
    for url, info in zip(urls[1:], infos[1:]):
        a, b = first.get("identity", {}), info.get("identity", {})
        diffs = [
            f"{k}: {a.get(k)!r} in {urls[0]} vs {b.get(k)!r} in {url}"
            for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)
        ]
        if diffs:
            raise _refuse(
                "the inputs come from different extractions (identity differs):\n  "
                + "\n  ".join(diffs)
                + "\nMerge only the shard stores of one `layercal extract` command."
            )
        for key in MUST_MATCH:
            if info.get(key) != first.get(key):
                raise _refuse(
                    f"{key} differs: {first.get(key)!r} in {urls[0]} vs {info.get(key)!r} in {url}"
                )


def _array_digest(group: zarr.Group, name: str) -> str:
    """sha256 of an array's decoded values, read one chunk row at a time (W_U can be GBs)."""
    a = fmt.array(group, name)
    h = hashlib.sha256()
    step = a.chunks[0]
    for start in range(0, a.shape[0], step):
        part = np.asarray(a[start : start + step])
        if part.dtype.kind in "biuf":
            h.update(part.astype(part.dtype.newbyteorder("<"), copy=False).tobytes())
        else:
            h.update(json.dumps([str(x) for x in part.ravel()]).encode("utf-8"))
    return h.hexdigest()


def _check_shared(
    urls: Sequence[str], locs: Sequence[Location], groups: Sequence[zarr.Group]
) -> None:
    """The same activation arrays, and everything outside the blocks (metadata, W_U,
    per-example data) equal, in every input."""
    names = sorted(set(groups[0].array_keys()) - set(BLOCK_ARRAYS))
    ref_meta = {n: locs[0].read_json(f"{n}/zarr.json") for n in names}
    ref_data: dict[str, str] = {}
    acts = fmt.activation_arrays(groups[0])
    for url, loc, group in zip(urls[1:], locs[1:], groups[1:]):
        if fmt.activation_arrays(group) != acts:
            odd = sorted(set(fmt.activation_arrays(group)) ^ set(acts))
            raise _refuse(
                f"{url} and {urls[0]} differ in the activation arrays they record ({', '.join(odd)} "
                "in one only): one was created by a layercal from before that array was added, "
                "or with another --capture. Merge shard stores of one `layercal extract` command "
                "run by one version, or re-extract the others."
            )
        other = sorted(set(group.array_keys()) - set(BLOCK_ARRAYS))
        if other != names:
            raise _refuse(
                f"{url} has arrays {sorted(set(other) ^ set(names))} that {urls[0]} lacks or vice versa"
            )
        for n in names:
            if loc.read_json(f"{n}/zarr.json") != ref_meta[n]:
                raise _refuse(f"the metadata of array {n} differs between {urls[0]} and {url}")
            if n not in ref_data:
                ref_data[n] = _array_digest(groups[0], n)
            if _array_digest(group, n) != ref_data[n]:
                raise _refuse(
                    f"array {n} holds different values in {urls[0]} and {url}; run "
                    "`layercal store verify` on both to see which one is damaged"
                )


def _copy(loc: Location, key: str, out: Path) -> None:
    target = out / key
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(target, "wb") as fo:
            for piece in loc.open_chunks(key):
                fo.write(piece)
    except FileNotFoundError as e:
        raise fmt.StoreError(
            f"{loc.url}: object {key} is missing although its block is marked written; run "
            f"`layercal store verify {loc.url}`"
        ) from e


def merge(
    out: str | os.PathLike[str],
    inputs: Sequence[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> Merged:
    """Merge the shard stores ``inputs`` into a new local store ``out`` (see the module doc).

    ``storage_options``: fsspec options for inputs given as URLs. Raises ``StoreError`` naming
    the difference when the inputs do not belong together."""
    out = Path(local_path(os.fspath(out)))
    if out.exists():
        raise fmt.StoreError(
            f"{out} exists; merge writes a new store. Remove it or choose another OUT."
        )
    if not inputs:
        raise fmt.StoreError("name at least one shard store to merge")
    urls = list(inputs)
    locs = [Location(u, storage_options or {}) for u in urls]
    groups = [loc.open_group(consolidated=False) for loc in locs]
    infos = [fmt.check_format(g, u) for g, u in zip(groups, urls)]
    _check_same_extraction(urls, infos)
    _check_shared(urls, locs, groups)
    layout = fmt.layout_of(groups[0])
    chosen: dict[int, int] = {}
    shas = [[str(x) for x in np.asarray(fmt.array(g, "block_sha256")[...]).ravel()] for g in groups]
    for i, g in enumerate(groups):
        for b, ok in enumerate(block_status(fmt.written_mask(g), shas[i], layout)):
            if not ok:
                continue
            j = chosen.setdefault(b, i)
            if shas[j][b] != shas[i][b]:
                sl = layout.block_slice(b)
                raise _refuse(
                    f"block {b} (examples {sl.start}-{sl.stop - 1}) is written in {urls[j]} and "
                    f"{urls[i]} with different content (sha256 {shas[j][b][:16]}... vs "
                    f"{shas[i][b][:16]}...). Run `layercal store verify` on both, then leave out "
                    "the damaged one (or re-extract that block)."
                )
    tmp = out.with_name(out.name + ".merging")
    shutil.rmtree(tmp, ignore_errors=True)
    all_block_keys = {k for b in range(layout.n_blocks) for k in block_keys(groups[0], b)}
    for key in sorted(locs[0].sizes()):
        if key not in all_block_keys and key not in ("zarr.json", CARD, MANIFEST):
            _copy(locs[0], key, tmp)
    for b, i in sorted(chosen.items()):
        for key in block_keys(groups[i], b):
            _copy(locs[i], key, tmp)
    runs: list[Any] = []
    for r in (r for info in infos for r in info.get("runs", [])):
        if r not in runs:  # the same input named twice, or shards resumed from one copy
            runs.append(r)
    merged_from = [
        {"store": u, "blocks": sorted(b for b, i in chosen.items() if i == k)}
        for k, u in enumerate(urls)
    ]
    missing = [b for b in range(layout.n_blocks) if b not in chosen]
    root = locs[0].read_json("zarr.json")
    root.pop("consolidated_metadata", None)  # stale until finalize consolidates the merged store
    info = dict(
        infos[0], runs=runs, status={"created": True, "complete": False, "merged_from": merged_from}
    )
    root.setdefault("attributes", {})["layercal"] = info
    (tmp / "zarr.json").write_text(json.dumps(root, indent=2))
    if not missing:
        finished = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        fmt.finalize(tmp, {"finished": finished, "merged_from": merged_from})
    os.replace(tmp, out)
    return Merged(str(out), {b: urls[i] for b, i in sorted(chosen.items())}, missing)
