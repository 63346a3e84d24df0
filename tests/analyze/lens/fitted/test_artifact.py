"""analyze/lens/fitted/artifact.py: block-wise .npy writing and reading."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.lens.fitted.artifact import BlockWriter, read_block


def test_blocks_written_by_seeking_read_back_as_np_load(tmp_path):
    rng = np.random.default_rng(0)
    full = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
    w = BlockWriter(tmp_path / "a.npy", full.shape)
    for f in range(3):
        for layer in range(4):
            w.write((f, layer), full[f, layer])
    assert np.array_equal(np.load(tmp_path / "a.npy"), full)
    assert np.array_equal(read_block(tmp_path / "a.npy", (2, 1)), full[2, 1])
    assert np.array_equal(read_block(tmp_path / "a.npy", (1,)), full[1])
    with pytest.raises(ValueError, match="block of 7 values"):
        w.write((0, 0), np.zeros(7))
