"""analyze/lens/fitted/artifact.py: block-wise .npy writing and reading, loading a lens folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analyze.lens.fitted import LensError, fit_lens, load_lens
from analyze.lens.fitted.artifact import BlockWriter, read_block
from tests.analyze.lens.fitted.planted import make_store


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


def test_load_lens_refuses_what_is_not_a_lens(tmp_path):
    with pytest.raises(LensError, match="is not a lens folder .*`layercal lens fit STORE -o DIR"):
        load_lens(tmp_path)
    store = make_store(tmp_path / "s.zarr", n=40, n_depth=3, d=4)
    lens = fit_lens(store, "shortcut", tmp_path / "lens", top_k=4)
    info = json.loads((lens.path / "lens.json").read_text())
    (lens.path / "lens.json").write_text(json.dumps({**info, "format_version": 99}))
    with pytest.raises(LensError, match="version 99; this layercal reads"):
        load_lens(lens.path)
    (lens.path / "lens.json").write_text(json.dumps(info))
    (lens.path / "bias.npy").unlink()
    with pytest.raises(LensError, match="lacks bias.npy"):
        load_lens(lens.path)
