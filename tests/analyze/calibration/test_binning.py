"""analyze/calibration/_binning.py: per-bin sums that add up across chunks (BinStats)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from analyze import calibration as M
from tests.analyze.calibration.reference import (
    random_conf,
)


def test_binstats_halves_add_up_to_whole():
    rng = np.random.default_rng(1)
    conf = random_conf(rng, 1001, 15)
    correct = rng.uniform(size=1001) < conf
    whole = M.bin_stats(conf, correct, 15)
    a, b = M.bin_stats(conf[:400], correct[:400], 15), M.bin_stats(conf[400:], correct[400:], 15)
    merged = a + b
    np.testing.assert_array_equal(merged.count, whole.count)
    np.testing.assert_allclose(merged.sum_conf, whole.sum_conf, rtol=1e-13)
    np.testing.assert_allclose(merged.sum_correct, whole.sum_correct, rtol=1e-13)
    assert M.ece_from_bins(merged) == pytest.approx(M.ece(conf, correct, 15), rel=1e-12)
    assert M.mce_from_bins(merged) == pytest.approx(M.mce(conf, correct, 15), rel=1e-12)
    chunks = [M.bin_stats(conf[i : i + 100], correct[i : i + 100], 15) for i in range(0, 1001, 100)]
    assert sum(chunks).n == 1001  # sum() starts from 0
    assert M.BinStats.zeros(15) + whole == whole
    assert pickle.loads(pickle.dumps(whole)) == whole  # ships between dask workers
    with pytest.raises(ValueError, match="bins"):
        _ = whole + M.bin_stats(conf, correct, 10)
    with pytest.raises(ValueError):
        whole.count[0] = 5  # read-only
