"""analyze/lens/fitted/folds.py: stratified by subject, balanced, seeded, order-free."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.lens.fitted.folds import cross_folds, training_rows


def _examples(n: int = 103):
    subjects = np.array([f"s{i % 7}" for i in range(n)])
    ids = np.array([f"ex/{i:04d}" for i in range(n)])
    return subjects, ids


def test_every_subject_is_spread_over_the_folds_and_sizes_differ_by_one():
    subjects, ids = _examples()
    folds = cross_folds(subjects, ids, 5, 0)
    sizes = np.bincount(folds, minlength=5)
    assert sizes.sum() == subjects.size and sizes.max() - sizes.min() <= 1
    for s in np.unique(subjects):
        per = np.bincount(folds[subjects == s], minlength=5)
        assert per.max() - per.min() <= 1, (s, per)


def test_depends_on_ids_not_order_and_on_the_seed():
    subjects, ids = _examples()
    folds = cross_folds(subjects, ids, 5, 0)
    perm = np.random.default_rng(1).permutation(subjects.size)
    assert np.array_equal(cross_folds(subjects[perm], ids[perm], 5, 0), folds[perm])
    assert not np.array_equal(cross_folds(subjects, ids, 5, 1), folds)


def test_training_rows_leave_the_fold_out():
    subjects, ids = _examples(40)
    folds = cross_folds(subjects, ids, 4, 0)
    for f in range(4):
        rows = training_rows(folds, f)
        assert not np.isin(rows, np.flatnonzero(folds == f)).any()
        assert rows.size + (folds == f).sum() == 40


@pytest.mark.parametrize("k", [1, 0, True, 2.5])
def test_bad_fold_counts_are_refused(k):
    subjects, ids = _examples(10)
    with pytest.raises(ValueError, match="folds must be an integer >= 2"):
        cross_folds(subjects, ids, k, 0)
    with pytest.raises(ValueError, match="cannot be divided into 20 folds"):
        cross_folds(subjects, ids, 20, 0)
