"""extract/write/storeio.py: write errors that say what to do, the run record, a complete
store's summary, sizes; on a real synthetic store."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
import zarr

from extract.write.storeio import already_complete, record_run, store_bytes, store_io_error
from layercal import format as fmt
from layercal.lens import NormSpec
from layercal.testing import example_meta, synthetic_store


def _store(path: Path, write: list[int] | None = None) -> Path:
    rng = np.random.default_rng(0)
    n, d = 130, 8  # two blocks of 128: the second holds 2 examples
    return synthetic_store(
        path,
        meta=example_meta(np.arange(n) % 4, ["anatomy"] * n),
        n_depth=3,
        w_u=rng.normal(size=(16, d)),
        norm=NormSpec("rmsnorm", np.ones(d, np.float32), None, 1e-5),
        answer_ids=[0, 1, 2, 3],
        resid=rng.normal(size=(n, 3, d)).astype(np.float32),
        block=128,
        write=write,
    )


@pytest.mark.parametrize(
    "code, cause, fix",
    [
        (errno.ENOSPC, "the disk or your quota is full", "free space where"),
        (errno.EFBIG, "a file size limit is set (ulimit -f)", "free space where"),
        (errno.EROFS, "read-only filesystem", "make s.zarr writable"),
        (errno.EIO, "an I/O error", "check the filesystem holding s.zarr"),
    ],
)
def test_a_write_error_names_its_cause_and_the_fix(code, cause, fix):
    err = store_io_error(Path("s.zarr"), "write block 3 of", OSError(code, "boom"))
    text = str(err)
    assert text.startswith("cannot write block 3 of s.zarr: ") and cause in text
    assert f"Fix: {fix}" in text and "--resume" in text
    again = store_io_error(Path("s.zarr"), "create", OSError(code, "boom"), resumable=False)
    assert "--resume" not in str(again) and str(again).endswith("run the same command again.")


def test_runs_are_appended_to_the_record(tmp_path):
    g = zarr.open_group(str(_store(tmp_path / "s.zarr")), mode="r+")
    record_run(g, {"started": "t0", "batch_size": 8})
    record_run(g, {"started": "t1", "shard": "0/2"})
    assert fmt.attrs(g)["runs"] == [
        {"started": "t0", "batch_size": 8},
        {"started": "t1", "shard": "0/2"},
    ]


def test_only_a_finalized_fully_written_store_is_already_complete(tmp_path):
    done = _store(tmp_path / "done.zarr")
    g = zarr.open_group(str(done), mode="r")
    summary = already_complete(done, g, fmt.layout_of(g), t0=0.0)
    assert summary is not None and summary.already_complete and summary.complete
    assert (summary.n_examples, summary.n_written, summary.blocks_done) == (130, 130, 0)
    assert summary.store_bytes == store_bytes(done) > 0
    part = _store(tmp_path / "part.zarr", write=[0])
    g = zarr.open_group(str(part), mode="r")
    assert already_complete(part, g, fmt.layout_of(g), t0=0.0) is None


def test_store_bytes_is_the_sum_of_its_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_bytes(b"12345")
    (tmp_path / "y").write_bytes(b"123")
    assert store_bytes(tmp_path) == 8
