"""Binned calibration errors: ECE and MCE on equal-width bins, ECE on equal-mass bins.

Equal-width bins: M bins on [0, 1], bin i = [i/M, (i+1)/M) with edges computed as ``i / M`` in
float64, and conf == 1.0 in the last bin. With per-bin sums S_conf, S_correct and counts |B|,
ECE = sum_b |B|/n |acc(B) - conf(B)| = sum_b |S_correct(b) - S_conf(b)| / n, and
MCE = max over bins with |B| >= min_count of |S_correct(b) - S_conf(b)| / |B|.

MCE_MIN_COUNT (10) is the default min_count everywhere MCE is computed: with min_count = 1 a bin
holding one example sets MCE to |correct - conf| of that example alone (up to 1); with 10 the
bin's accuracy has a standard error of at most 0.5 / sqrt(10) = 0.16, and at the sizes analysed
here (hundreds to 14,042 examples over 10-15 bins) only bins with a sliver of the data are left
out (they still count in ECE). MCE is nan when no bin holds min_count examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analyze.calibration._checks import as_conf_correct, check_n_bins

MCE_MIN_COUNT = 10  # default minimum examples in a bin for it to count in MCE (see above)


@dataclass(frozen=True, eq=False)
class BinStats:
    """Per-bin partial sums for M equal-width confidence bins; all fields (M,).

    Mergeable: ``a + b`` (and ``sum(parts)``) gives the stats of the union of two disjoint sets of
    examples, so per-chunk results can be reduced by dask or distributed.
    """

    count: NDArray[np.int64]
    sum_conf: NDArray[np.float64]
    sum_correct: NDArray[np.float64]

    def __post_init__(self) -> None:
        count = np.array(self.count, dtype=np.int64)
        sum_conf = np.array(self.sum_conf, dtype=np.float64)
        sum_correct = np.array(self.sum_correct, dtype=np.float64)
        if count.ndim != 1 or count.size == 0:
            raise ValueError(f"BinStats.count must have shape (M,) with M >= 1, got {count.shape}")
        if sum_conf.shape != count.shape or sum_correct.shape != count.shape:
            raise ValueError(
                "BinStats fields must share one shape (M,); got "
                f"{count.shape}, {sum_conf.shape}, {sum_correct.shape}"
            )
        if (count < 0).any():
            raise ValueError("BinStats.count must be non-negative")
        for name, arr in (("count", count), ("sum_conf", sum_conf), ("sum_correct", sum_correct)):
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    @classmethod
    def zeros(cls, n_bins: int) -> BinStats:
        """Stats of no examples: the identity of ``+``."""
        m = check_n_bins(n_bins)
        return cls(np.zeros(m, np.int64), np.zeros(m), np.zeros(m))

    @property
    def n_bins(self) -> int:
        return int(self.count.size)

    @property
    def n(self) -> int:
        """Number of examples summed."""
        return int(self.count.sum())

    def __add__(self, other: object) -> BinStats:
        if isinstance(other, int) and other == 0:
            return self
        if not isinstance(other, BinStats):
            return NotImplemented
        if other.n_bins != self.n_bins:
            raise ValueError(f"cannot add BinStats with {self.n_bins} and {other.n_bins} bins")
        return BinStats(
            self.count + other.count,
            self.sum_conf + other.sum_conf,
            self.sum_correct + other.sum_correct,
        )

    def __radd__(self, other: object) -> BinStats:
        return self.__add__(other)  # lets sum() start from 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BinStats):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, f), getattr(other, f))
            for f in ("count", "sum_conf", "sum_correct")
        )


def bin_index(conf: NDArray[np.float64], n_bins: int) -> NDArray[np.intp]:
    """Equal-width bin of each confidence, same shape as conf, values 0..M-1."""
    edges = np.arange(n_bins + 1) / n_bins
    idx = np.searchsorted(edges, conf, side="right") - 1
    return np.minimum(idx, n_bins - 1)  # conf == 1.0 joins the last bin


def bin_sums(
    conf: NDArray[np.float64], correct: NDArray[np.float64], n_bins: int
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """count, sum_conf, sum_correct, each (..., M), for conf and correct (..., n).

    One bincount over the flat index ``group * M + bin`` covers every leading index at once.
    """
    lead = conf.shape[:-1]
    groups = int(np.prod(lead, dtype=np.int64))
    flat = (
        np.arange(groups)[:, None] * n_bins + bin_index(conf, n_bins).reshape(groups, -1)
    ).ravel()
    size = groups * n_bins
    count = np.bincount(flat, minlength=size).astype(np.int64)
    s_conf = np.bincount(flat, weights=conf.ravel(), minlength=size)
    s_corr = np.bincount(flat, weights=correct.ravel(), minlength=size)
    shape = (*lead, n_bins)
    return count.reshape(shape), s_conf.reshape(shape), s_corr.reshape(shape)


def ece_from_sums(
    count: NDArray[Any], sum_conf: NDArray[np.float64], sum_correct: NDArray[np.float64]
) -> NDArray[np.float64]:
    """ECE over the last (bin) axis: (..., M) sums -> (...,)."""
    return np.abs(sum_correct - sum_conf).sum(axis=-1) / count.sum(axis=-1)


def mce_from_sums(
    count: NDArray[Any],
    sum_conf: NDArray[np.float64],
    sum_correct: NDArray[np.float64],
    min_count: int,
) -> NDArray[np.float64]:
    """MCE over the last (bin) axis: (..., M) -> (...,); nan where no bin has min_count examples."""
    ok = count >= min_count
    gap = np.abs(sum_correct - sum_conf) / np.where(ok, count, 1)
    best = np.where(ok, gap, -np.inf).max(axis=-1)
    return np.where(ok.any(axis=-1), best, np.nan)


def check_min_count(min_count: int) -> int:
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 1:
        raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}")
    return int(min_count)


def _as_1d(conf: ArrayLike, correct: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    c, y = as_conf_correct(conf, correct)
    if c.ndim != 1:
        raise ValueError(f"conf and correct must be 1-D (n,), got shape {c.shape}")
    return c, y


def bin_stats(conf: ArrayLike, correct: ArrayLike, n_bins: int = 10) -> BinStats:
    """Per-bin count, sum of confidence and sum of correctness for conf, correct (n,)."""
    c, y = _as_1d(conf, correct)
    return BinStats(*bin_sums(c, y, check_n_bins(n_bins)))


def ece_from_bins(stats: BinStats) -> float:
    """Expected calibration error from (merged) bin sums."""
    if stats.n == 0:
        raise ValueError("BinStats holds no examples; ECE is undefined")
    return float(ece_from_sums(stats.count, stats.sum_conf, stats.sum_correct))


def mce_from_bins(stats: BinStats, min_count: int = MCE_MIN_COUNT) -> float:
    """Maximum calibration error over bins with count >= min_count; nan if there are none."""
    m = check_min_count(min_count)
    return float(mce_from_sums(stats.count, stats.sum_conf, stats.sum_correct, m))


def ece(conf: ArrayLike, correct: ArrayLike, n_bins: int = 10) -> float:
    """Expected calibration error, M equal-width bins: sum_b |B|/n |acc(B) - conf(B)|.

    conf: (n,) in [0, 1]; correct: (n,) bool or 0/1.
    """
    return ece_from_bins(bin_stats(conf, correct, n_bins))


def mce(
    conf: ArrayLike, correct: ArrayLike, n_bins: int = 10, min_count: int = MCE_MIN_COUNT
) -> float:
    """Maximum calibration error: max_b |acc(B) - conf(B)| over bins with >= min_count examples
    (default MCE_MIN_COUNT = 10, so one example alone cannot set it); nan if there are none."""
    return mce_from_bins(bin_stats(conf, correct, n_bins), min_count)


def ece_equal_mass_nd(
    conf: NDArray[np.float64], correct: NDArray[np.float64], n_bins: int
) -> NDArray[np.float64]:
    """Equal-mass ECE over the last axis: conf, correct (..., n) -> (...,). See ece_equal_mass."""
    n = conf.shape[-1]
    # by conf, ties: incorrect first, as one int64 key: the bits of a float in [0, 1] order as
    # the float does and stay below 2**62, so 2 * bits + correct is exact (one sort, not lexsort)
    key = np.ascontiguousarray(conf, np.float64).view(np.int64) * 2 + (correct > 0)
    order = np.argsort(key, axis=-1)
    c = np.take_along_axis(conf, order, axis=-1)
    y = np.take_along_axis(correct, order, axis=-1)
    q, r = divmod(n, n_bins)
    sizes = np.array([q + 1] * r + [q] * (n_bins - r))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])[sizes > 0]
    gap = np.add.reduceat(y, starts, axis=-1) - np.add.reduceat(c, starts, axis=-1)
    return np.abs(gap).sum(axis=-1) / n


def ece_equal_mass(conf: ArrayLike, correct: ArrayLike, n_bins: int = 10) -> float:
    """ECE on M bins holding (as near as possible) equal numbers of examples.

    The n examples are sorted by confidence and cut into M consecutive runs whose sizes differ by
    at most one (the first n mod M runs are one larger, as in ``np.array_split``); with n < M the
    empty bins are skipped. Ties in confidence are ordered by correctness (incorrect first), so
    the result does not depend on the order of the input even when a run of equal confidences
    straddles a bin boundary.
    """
    c, y = _as_1d(conf, correct)
    return float(ece_equal_mass_nd(c, y, check_n_bins(n_bins)))
