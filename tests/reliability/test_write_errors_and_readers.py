"""A writer that runs out of space mid-extraction, and a reader that opens its store meanwhile.

The store is created and its block 0 written (``--shard 0/3``); then a real ``--resume`` process
runs under a file size limit (RLIMIT_FSIZE, as a full disk or quota would act) that its small
writes pass and a block of ``resid`` does not, so writing block 1 fails with EFBIG. While it
computes that block, this process opens the store as a reader. The writer must stop with a clear
message and a store that the same command with ``--resume`` completes byte-identically.
"""

from __future__ import annotations

import errno
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from analyze.lens.store import IncompleteStoreError, open_store
from layercal import format as fmt

from .helpers import (
    N_BLOCKS,
    assert_same_arrays,
    blocks_written,
    command,
    extract_here,
    start,
)

FILE_LIMIT = 64 * 1024  # above the root zarr.json, below one block of resid (~300 KB)


def _limit_file_size() -> None:
    """In the writer: files may not grow past FILE_LIMIT. Python ignores SIGXFSZ, so a write
    past it fails with EFBIG, as one on a full disk fails with ENOSPC."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


def _read_while_writing(out: Path, proc: subprocess.Popen[str]) -> dict[str, Any]:
    running = proc.poll() is None
    try:
        open_store(out)
        refused = ""
    except IncompleteStoreError as e:
        refused = str(e)
    ds = open_store(out, allow_partial=True)
    raw = xr.open_zarr(out, consolidated=False)
    return {
        "writer_running": running,
        "refused": refused,
        "example_id": ds["example_id"].values.copy(),
        "resid": ds["resid"].values,
        "lens_logits": ds["lens_logits"].values,
        "model_logits": ds["model_logits"].values,
        "written": raw["written"].values.copy(),
        "raw_resid_nan": np.isnan(raw["resid"].values).all(axis=(1, 2)),
    }


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 300) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout and proc.poll() is None:
        if path.exists():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture(scope="module")
def failed_run(_first_block, tmp_path_factory, tiny_llama_dir, data_dir) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("diskfull") / "s.zarr"
    shutil.copytree(_first_block, out)  # block 0 written by `--shard 0/3`
    proc = start(command(tiny_llama_dir, out, data_dir, "--resume"), preexec_fn=_limit_file_size)
    try:
        # its claim on block 1 appears when it starts computing that block
        computing = _wait_for(fmt.claims_dir(out) / "block-1.json", proc)
        seen = _read_while_writing(out, proc) if computing else {}
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert computing, f"the writer never started block 1: {err[-3000:]}"
    return {"out": out, "rc": proc.returncode, "stderr": err, "seen": seen}


def test_reader_sees_only_written_examples(failed_run, reference):
    seen = failed_run["seen"]
    assert seen["writer_running"], "the writer had stopped before the reader opened the store"
    assert "--allow-partial" in seen["refused"] and "--resume" in seen["refused"]
    written = seen["written"]
    assert 0 < written.sum() < written.size
    # unwritten examples are NaN (the fill value) in the raw arrays, written ones complete
    assert (seen["raw_resid_nan"] == ~written).all()
    ref = open_store(reference)
    idx = np.flatnonzero(written)
    assert list(seen["example_id"]) == list(ref["example_id"].values[idx])
    for name in ("resid", "lens_logits", "model_logits"):
        got, want = seen[name], ref[name].values[idx]
        assert np.isfinite(got).all() and np.array_equal(got, want), name


def test_disk_full_mid_run_is_clear_and_resumable(
    failed_run, tiny_llama_dir, data_dir, reference, capsys
):
    out, err = failed_run["out"], failed_run["stderr"]
    assert failed_run["rc"] == 1, err
    assert "Traceback" not in err
    assert "error: cannot write block 1 of" in err and "File too large" in err
    assert "free space" in err and "--resume" in err
    assert blocks_written(out) == 1  # the failed block is not marked
    assert not list(out.rglob("*.partial"))  # no half-written object left behind
    assert not list(fmt.claims_dir(out).glob("block-*.json"))  # its claims were released
    assert extract_here(tiny_llama_dir, out, data_dir, "--resume") == 0, capsys.readouterr().err
    assert blocks_written(out) == N_BLOCKS
    assert_same_arrays(out, reference)


@pytest.mark.parametrize(
    "code, cause",
    [
        (errno.ENOSPC, "disk or your quota is full"),
        (errno.EDQUOT, "disk or your quota is full"),
        (errno.EACCES, "permission denied"),
        (errno.EROFS, "read-only filesystem"),
        (errno.EIO, "an I/O error"),
    ],
)
def test_write_error_messages_say_what_to_do(code, cause):
    """The same path for errors this machine cannot provoke as root (chmod does not stop root)."""
    from extract.write.storeio import store_io_error

    e = OSError(code, "strerror text")
    msg = str(store_io_error(Path("s.zarr"), "write block 3 of", e))
    assert msg.startswith("cannot write block 3 of s.zarr: ") and cause in msg
    assert "strerror text" in msg and "--resume" in msg
    msg = str(store_io_error(Path("s.zarr"), "create", e, resumable=False))
    assert "--resume" not in msg and "run the same command again" in msg
