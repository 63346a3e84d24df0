"""Cross-fitting folds: every example is read through a translator fitted without it.

The examples are divided into k folds stratified by subject and seeded: each subject's examples,
sorted by id, are dealt round the folds in a seeded random order, each subject continuing where
the previous one stopped, so every fold holds about 1/k of every subject and the fold sizes
differ by at most one. The translator that lenses an example is
the one fitted on the other k - 1 folds. Labels are never read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from analyze.calibration.splits import as_str

FOLD_STREAM = 0x1E45F  # the random stream of the lens folds (independent of the other splits)
FOLD_RULE = (
    "k folds stratified by subject, seeded: each subject's examples, sorted by id, are dealt "
    "round the folds in a seeded random order, each subject continuing where the previous one "
    "stopped; an example is lensed by the translator fitted on the other k - 1 folds"
)


def cross_folds(subject: Any, example_id: Any, k: int, seed: int) -> NDArray[np.int64]:
    """(n,) fold of each example, 0..k-1. ``subject``, ``example_id``: (n,) strings.

    Depends only on the ids, subjects, k and the seed, not on the order of the examples.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"folds must be an integer >= 2, got {k!r}")
    subject, example_id = as_str(subject), as_str(example_id)
    if subject.size < k:
        raise ValueError(f"{subject.size} examples cannot be divided into {k} folds")
    rng = np.random.default_rng([seed, FOLD_STREAM])
    out = np.empty(subject.size, np.int64)
    first = 0
    for s in sorted(set(subject.tolist())):
        members = np.flatnonzero(subject == s)
        members = members[np.argsort(example_id[members], kind="stable")]
        order = members[rng.permutation(members.size)]
        out[order] = (first + np.arange(members.size)) % k
        first = (first + members.size) % k  # small subjects fill the folds in turn
    return out


def training_rows(folds: NDArray[np.int64], f: int) -> NDArray[np.intp]:
    """Positions of the examples a fold's translator is fitted on: every fold but ``f``."""
    return np.flatnonzero(folds != f)
