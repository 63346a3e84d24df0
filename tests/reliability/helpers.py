"""Shared pieces of the reliability suite: the tiny extraction, polling, store snapshots.

The extraction command and the array reader are those of ``tests/extract/extraction.py``; the
runs here are shorter (260 examples: blocks of 128, 128 and 4).
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from layercal import format as fmt
from tests import REPO
from tests.extract.extraction import ACT, arrays, cli

LIMIT = 260
N_BLOCKS = 3


def command(model_dir: Path, out: Path, data_dir: Path, *extra: str) -> list[str]:
    """``python -m extract ...`` on the tiny model, 300 examples in blocks of 128."""
    return cli(model_dir, out, data_dir, *extra, limit=LIMIT)


def extract_here(model_dir: Path, out: Path, data_dir: Path, *extra: str) -> int:
    """The same extraction through the CLI entry point, in this process (no start-up cost)."""
    from extract.cli import main

    return main(command(model_dir, out, data_dir, *extra)[3:])


def start(cmd: list[str], **kw: Any) -> subprocess.Popen[str]:
    """A writer process; its stderr is kept for the assertions."""
    return subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw
    )


def blocks_written(out: Path) -> int | None:
    """Blocks marked written, or None while the store is not created yet."""
    try:
        g = zarr.open_group(str(out), mode="r")
        if not fmt.attrs(g).get("status", {}).get("created"):
            return None
        lay = fmt.layout_of(g)
        w = fmt.written_mask(g)
        return sum(bool(w[lay.block_slice(b)].all()) for b in range(lay.n_blocks))
    except Exception:  # not there yet, or its root metadata is being replaced
        return None


def wait_for_blocks(out: Path, proc: subprocess.Popen[str], n: int, timeout: float = 300) -> bool:
    """Poll until the store exists with at least ``n`` blocks written; False if the writer
    ended first or the time ran out."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            return False
        done = blocks_written(out)
        if done is not None and done >= n:
            return True
        time.sleep(0.01)
    return False


def assert_same_arrays(out: Path, reference: Path) -> None:
    """Every block-written array byte-identical to the uninterrupted run's."""
    a, b = arrays(out), arrays(reference)
    for k in ACT:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file and folder under ``root``: content sha256 (files) and mtime in ns."""
    out: dict[str, tuple[str, int]] = {}
    for p in sorted([root, *root.rglob("*")]):
        st = p.stat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        out[str(p.relative_to(root))] = (digest, st.st_mtime_ns)
    return out
