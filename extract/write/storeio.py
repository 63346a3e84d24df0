"""Writing to a store during an extraction: errors that say what to do, the run record, the
summary of a store already complete, the store's size on disk."""

from __future__ import annotations

import errno
import time
from pathlib import Path
from typing import Any

import zarr

from extract.config import ExtractSummary
from layercal import format as fmt


def store_io_error(out: Path, what: str, e: OSError, resumable: bool = True) -> fmt.StoreError:
    """A failed write to the store as an error that says what happened and what to do."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        cause = "the disk or your quota is full, or a file size limit is set (ulimit -f)"
        fix = f"free space where {out} lives (or raise the limit)"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        cause = "permission denied, or a read-only filesystem"
        fix = f"make {out} writable by this user"
    else:
        cause, fix = "an I/O error", f"check the filesystem holding {out}"
    then = (
        "then run the same command with --resume: blocks already marked written are kept and "
        "the rest is recomputed."
        if resumable
        else "then run the same command again."
    )
    return fmt.StoreError(f"cannot {what} {out}: {cause} ({e.strerror or e}). Fix: {fix}, {then}")


def record_run(g: zarr.Group, record: dict[str, Any]) -> None:
    """Append ``record`` to the store's ``attrs.layercal.runs``."""
    info = fmt.attrs(g)
    info["runs"] = list(info.get("runs", [])) + [record]
    g.attrs["layercal"] = fmt.jsonable(info)


def already_complete(
    out: Path, g: zarr.Group, layout: fmt.Layout, t0: float
) -> ExtractSummary | None:
    """The summary of a store that is finalized and fully written, else None. Such a store needs
    nothing: no run record, no second finalize, so its bytes and attributes stay as they are."""
    status = fmt.attrs(g).get("status", {})
    mask = fmt.written_mask(g)
    if not (status.get("complete") and mask.all()):
        return None  # (all written but not finalized: a kill before finalize; the run finishes it)
    return ExtractSummary(
        store=str(out),
        n_examples=layout.n_examples,
        n_written=int(mask.sum()),
        blocks_done=0,
        seconds=time.time() - t0,
        store_bytes=store_bytes(out),
        self_check_max_abs_diff=float(status.get("self_check_max_abs_diff_last_run") or 0.0),
        complete=True,
        already_complete=True,
    )


def store_bytes(path: Path) -> int:
    """Bytes of the files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
