"""What tells a correction from a rescaling: the signed gap, AUROC and the Brier decomposition.

Lowering every confidence by the same amount (a rescaling) can shrink ECE without telling right
answers from wrong ones any better; a correction that knows which answers are wrong lowers their
confidence more. So beside ECE:

- ``signed_gap`` = mean confidence - accuracy: > 0 overconfident, < 0 underconfident. ECE >=
  |gap|; when ECE falls only as fast as |gap| the change is a shift of every confidence.
- ``auroc``: the probability that a correct example has higher confidence than a wrong one (ties
  count 1/2; the Mann-Whitney statistic over the two groups). Any increasing map of the
  confidences leaves it unchanged: a pure rescaling cannot move it.
- ``brier_decomposition``: Murphy's decomposition of the top-label Brier score
  mean (conf_i - correct_i)^2 (the score of the confidence as a forecast of correctness, the
  same two quantities ECE compares; not the multi-class ``brier`` column, which scores every
  option) over the same equal-width bins as ECE:

      brier_top = reliability - resolution + uncertainty + within_bin,
      reliability = sum_b n_b/n (conf_b - acc_b)^2        (the squared-gap analogue of ECE),
      resolution  = sum_b n_b/n (acc_b - acc)^2           (how far the bins' accuracies spread),
      uncertainty = acc (1 - acc),
      within_bin  = 1/n sum_b sum_{i in b} [(c_i - conf_b)^2 - 2 (c_i - conf_b)(y_i - acc_b)],

  conf_b, acc_b the mean confidence and accuracy of bin b. Murphy's three-term identity holds for
  forecasts constant within each bin; ``within_bin`` is the exact remainder for confidences that
  vary inside a bin (Stephenson et al. 2008), so the identity above holds to rounding. A
  rescaling lowers reliability at fixed resolution; a correction can raise resolution.

Shapes: ``conf``, ``correct`` (..., n); results (...).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analyze.calibration._binning import bin_sums
from analyze.calibration._checks import as_conf_correct, check_n_bins

DECOMPOSITION = ("brier_top", "reliability", "resolution", "uncertainty", "within_bin")


def _shaped(x: NDArray[np.float64]) -> Any:
    return float(x) if x.ndim == 0 else x


def signed_gap(conf: ArrayLike, correct: ArrayLike) -> Any:
    """Mean confidence minus accuracy over the last axis: (..., n) -> (...)."""
    c, y = as_conf_correct(conf, correct)
    return _shaped(c.mean(axis=-1) - y.mean(axis=-1))


def average_ranks(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Ranks 1..n along the last axis, ties given the mean of the ranks they span: (..., n)."""
    n = x.shape[-1]
    order = np.argsort(x, axis=-1, kind="stable")
    s = np.take_along_axis(x, order, axis=-1)
    pos = np.broadcast_to(np.arange(1, n + 1, dtype=np.float64), x.shape)
    first = np.ones(x.shape, bool)
    first[..., 1:] = s[..., 1:] != s[..., :-1]
    last = np.ones(x.shape, bool)
    last[..., :-1] = first[..., 1:]
    start = np.maximum.accumulate(np.where(first, pos, 0.0), axis=-1)
    end = np.flip(np.minimum.accumulate(np.flip(np.where(last, pos, n + 1.0), -1), axis=-1), -1)
    ranks = np.empty(x.shape)
    np.put_along_axis(ranks, order, (start + end) / 2, axis=-1)
    return ranks


def auroc(conf: ArrayLike, correct: ArrayLike) -> Any:
    """Area under the ROC curve of confidence as a score for correctness: (..., n) -> (...).

    By the rank-sum (Mann-Whitney) formula, (R_+ - n_+ (n_+ + 1) / 2) / (n_+ n_-), R_+ the sum
    of the average ranks of the correct examples' confidences. nan where every example is right
    or every one is wrong (no pair to compare)."""
    c, y = as_conf_correct(conf, correct)
    n_pos = y.sum(axis=-1)
    n_neg = y.shape[-1] - n_pos
    r_pos = (average_ranks(c) * y).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (r_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return _shaped(np.where((n_pos > 0) & (n_neg > 0), out, np.nan))


def brier_decomposition(conf: ArrayLike, correct: ArrayLike, n_bins: int = 10) -> dict[str, Any]:
    """The top-label Brier score and its decomposition over ``n_bins`` equal-width bins
    (module docstring): {name: (...)} for every name of DECOMPOSITION."""
    c, y = as_conf_correct(conf, correct)
    m = check_n_bins(n_bins)
    n = c.shape[-1]
    count, s_c, s_y = bin_sums(c, y, m)
    s_cc = bin_sums(c, c * c, m)[2]
    s_cy = bin_sums(c, c * y, m)[2]
    safe = np.maximum(count, 1)
    acc = y.mean(axis=-1)
    conf_b, acc_b = s_c / safe, s_y / safe
    var_c = s_cc - s_c * conf_b  # sum (c - conf_b)^2 per bin
    cov = s_cy - s_c * acc_b  # sum (c - conf_b)(y - acc_b) per bin
    out = {
        "brier_top": ((c - y) ** 2).mean(axis=-1),
        "reliability": (count * (conf_b - acc_b) ** 2).sum(axis=-1) / n,
        "resolution": (count * (acc_b - acc[..., None]) ** 2).sum(axis=-1) / n,
        "uncertainty": acc * (1 - acc),
        "within_bin": (var_c - 2 * cov).sum(axis=-1) / n,
    }
    return {k: _shaped(np.asarray(v, np.float64)) for k, v in out.items()}
