"""analyze/calibration/temperature.py: temperature scaling recovers a planted temperature."""

from __future__ import annotations

import numpy as np
import pytest

from analyze import calibration as M
from tests.analyze.calibration.reference import (
    softmax,
)


def test_fit_temperature_recovers_planted_temperature():
    rng = np.random.default_rng(0)
    n, k = 20_000, 4
    true_logits = rng.normal(size=(n, k)) * 2.0
    cum = softmax(true_logits).cumsum(axis=1)
    label = np.minimum((rng.uniform(size=(n, 1)) > cum).sum(axis=1), k - 1)
    assert M.fit_temperature(3.0 * true_logits, label) == pytest.approx(3.0, rel=0.1)
    assert M.fit_temperature(true_logits / 2.0, label) == pytest.approx(0.5, rel=0.1)
    # with absent options the fit ignores their logits entirely
    mask = np.ones((n, k), bool)
    mask[: n // 2, 3] = False
    keep = mask[np.arange(n), label]
    junk = np.where(mask, 3.0 * true_logits, 1e6)
    assert M.fit_temperature(junk[keep], label[keep], mask[keep]) == pytest.approx(3.0, rel=0.1)
