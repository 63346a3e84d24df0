"""Block ownership: one writer per block of a store.

A writer claims block ``b`` (:func:`claim_block`) by an atomic create of ``block-<b>.json``,
holding its pid, host, start time and a random token, in the folder ``.<store name>.claims``
next to the store (outside the data, so readers never list it) before computing the block, and
releases it once the block is marked written. A second writer finding a live claim is refused
with a message naming the owner; a claim whose owner died on this host (checked with the pid and
the kernel's process start time) is taken over with a note, so kill -9 then ``--resume`` works.
A claim from another host cannot be checked and counts as live.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layercal.errors import BlockClaimedError


@dataclass(frozen=True)
class BlockClaim:
    """This process's ownership record of block ``block`` (the file ``path``)."""

    path: Path
    block: int
    token: str


def claims_dir(store: str | os.PathLike[str]) -> Path:
    """The folder of the ownership records of a store: ``.<name>.claims`` beside it, so the
    store holds data only and readers never list the records."""
    path = Path(store).resolve()
    return path.with_name(f".{path.name}.claims")


def _proc_stat(pid: int) -> list[str]:
    """Fields 3... of ``/proc/<pid>/stat`` (Linux; state first); empty where unavailable."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return []


def _proc_start(pid: int) -> str | None:
    """The kernel's start time of process ``pid`` (Linux), to tell a reused pid apart."""
    fields = _proc_stat(pid)
    return fields[19] if len(fields) > 19 else None  # field 22 of proc(5)


def is_live(rec: Mapping[str, Any]) -> bool:
    """Whether a claim's owner may still be writing. Only a process on this host can be checked;
    a claim from another host counts as live."""
    if rec.get("host") != socket.gethostname():
        return True
    pid = rec.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _proc_stat(pid)
    if len(fields) <= 19:  # no /proc: the pid exists, assume it is the owner
        return True
    # a zombie is dead; a different start time means the pid was reused by another process
    return fields[0] != "Z" and rec.get("proc_start") in (None, fields[19])


def _read_claim(path: Path) -> dict[str, Any] | None:
    """The record in a claim file; None when it is gone, {} when it is not a record."""
    try:
        rec = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return rec if isinstance(rec, dict) else {}


def read_claims(store: str | os.PathLike[str]) -> list[dict[str, Any]]:
    folder = claims_dir(store)
    recs = [_read_claim(p) for p in sorted(folder.glob("block-*.json"))]
    return [r for r in recs if r]


def claimed_message(store: str | os.PathLike[str], rec: Mapping[str, Any]) -> str:
    b = rec.get("block")
    claim = claims_dir(store) / f"block-{b}.json"
    return (
        f"block {b} of {store} is being written by another process (pid {rec.get('pid')} on "
        f"host {rec.get('host')}, since {rec.get('started')}); two writers must not fill the "
        "same blocks. Wait for that run to finish, or give each process its own --shard i/n. "
        f"If that process is gone (its machine crashed), delete {claim} and run again."
    )


def _create_exclusive(target: Path, rec: Mapping[str, Any]) -> bool:
    """Create ``target`` holding ``rec`` unless it exists; never visible half-written."""
    data = json.dumps(rec).encode()
    tmp = target.with_name(f"{target.name}.{rec['token']}.tmp")
    tmp.write_bytes(data)
    try:
        os.link(tmp, target)  # atomic, and fails if target exists
        return True
    except FileExistsError:
        return False
    except OSError:  # a filesystem without hard links
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _remove_stale(target: Path, rec: Mapping[str, Any]) -> bool:
    """Remove the dead owner's claim ``rec``; False if another process got there first."""
    moved = target.with_name(f"{target.name}.{uuid.uuid4().hex}.stale")
    try:
        os.rename(target, moved)  # of several takers exactly one moves it
    except FileNotFoundError:
        return False
    if _read_claim(moved) != rec:  # a fresh claim replaced the stale one meanwhile: restore it
        with contextlib.suppress(OSError):
            os.link(moved, target)
        moved.unlink(missing_ok=True)
        return False
    moved.unlink(missing_ok=True)
    return True


def claim_block(store: str | os.PathLike[str], b: int) -> tuple[BlockClaim, str | None]:
    """Claim block ``b`` of the store at ``store`` for this process before writing it.

    Returns the claim and, when a claim of a writer that died on this host was taken over, a
    note saying so. Raises :class:`BlockClaimedError` naming the owner when a live process (or
    one on another host, which cannot be checked) holds the block."""
    folder = claims_dir(store)
    folder.mkdir(exist_ok=True)
    target = folder / f"block-{b}.json"
    token = uuid.uuid4().hex
    rec: dict[str, Any] = {
        "block": b,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "proc_start": _proc_start(os.getpid()),
        "token": token,
    }
    note = None
    for _ in range(20):
        try:
            if _create_exclusive(target, rec):
                return BlockClaim(target, b, token), note
        except FileNotFoundError:  # a finishing writer removed the empty folder just now
            folder.mkdir(exist_ok=True)
            continue
        other = _read_claim(target)
        if other is None:  # released meanwhile
            continue
        if not other:  # not a record: being created by the fallback path, or damaged
            time.sleep(0.05)
            continue
        if is_live(other):
            raise BlockClaimedError(claimed_message(store, other))
        if _remove_stale(target, other):
            note = (
                f"note: took over block {b} of {store} from a writer that is gone (pid "
                f"{other.get('pid')} on {other.get('host')}, since {other.get('started')})"
            )
    raise BlockClaimedError(
        f"cannot claim block {b} of {store}: {target} is unreadable or keeps changing. If no "
        "other writer is running, delete it and run again."
    )


def release_block(claim: BlockClaim) -> None:
    """Give up a claim (after the block is marked written, or when its write failed)."""
    if (_read_claim(claim.path) or {}).get("token") == claim.token:
        claim.path.unlink(missing_ok=True)


def clear_dead_claims(store: str | os.PathLike[str]) -> None:
    """Remove claims whose owners are gone, and the claims folder when it is then empty."""
    folder = claims_dir(store)
    if not folder.is_dir():
        return
    for p in folder.glob("block-*.json"):
        rec = _read_claim(p)
        if rec is not None and not (rec and is_live(rec)):
            _remove_stale(p, rec)
    with contextlib.suppress(OSError):
        folder.rmdir()
