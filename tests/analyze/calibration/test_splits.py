"""analyze/calibration/splits.py: the one seeded per-subject split."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.calibration.splits import (
    DIRECTION_STREAM,
    LANDMARK_STREAM,
    TEMPERATURE_STREAM,
    as_str,
    stratified_split,
)

SUBJECT = np.array(["a"] * 10 + ["b"] * 7 + ["c"] * 1)
IDS = np.array([f"q{i:02d}" for i in range(SUBJECT.size)])


def test_each_subject_gets_its_share_rounded_up_or_down():
    fit = stratified_split(SUBJECT, IDS, 0.5, seed=0)
    assert fit.dtype == bool and fit.shape == SUBJECT.shape
    assert fit[SUBJECT == "a"].sum() == 5
    assert fit[SUBJECT == "b"].sum() in (3, 4) and fit[SUBJECT == "c"].sum() in (0, 1)


def test_the_split_depends_on_the_ids_not_their_order():
    fit = stratified_split(SUBJECT, IDS, 0.3, seed=7)
    perm = np.random.default_rng(1).permutation(SUBJECT.size)
    shuffled = stratified_split(SUBJECT[perm], IDS[perm], 0.3, seed=7)
    np.testing.assert_array_equal(shuffled, fit[perm])


def test_seeds_and_streams_give_independent_splits():
    n = 400
    subject, ids = np.array(["s"] * n), np.array([f"id{i}" for i in range(n)])
    a = stratified_split(subject, ids, 0.5, seed=0, stream=TEMPERATURE_STREAM)
    b = stratified_split(subject, ids, 0.5, seed=0, stream=LANDMARK_STREAM)
    c = stratified_split(subject, ids, 0.5, seed=1, stream=TEMPERATURE_STREAM)
    assert len({TEMPERATURE_STREAM, LANDMARK_STREAM, DIRECTION_STREAM}) == 3
    for other in (b, c):
        agree = (a == other).mean()
        assert 0.4 < agree < 0.6  # independent halves agree about half the time
    np.testing.assert_array_equal(a, stratified_split(subject, ids, 0.5, 0, TEMPERATURE_STREAM))


def test_a_fraction_outside_zero_one_is_refused():
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="fraction must be in"):
            stratified_split(SUBJECT, IDS, bad, seed=0)


def test_as_str_gives_fixed_width_unicode():
    out = as_str([b"x".decode(), 3, "yy"])
    assert out.dtype.kind == "U" and out.tolist() == ["x", "3", "yy"]
