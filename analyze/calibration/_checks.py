"""Input validation for the metric modules.

Every helper converts its argument to the dtype the metrics compute in and raises ``ValueError``
naming the argument, the shape or value it got and the one it expected.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def as_scores(x: ArrayLike, name: str) -> NDArray[np.float64]:
    """``x`` as float64 of shape (..., n, K) with n >= 1 and K >= 1 (logits or probabilities)."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < 2:
        raise ValueError(f"{name} must have shape (..., n, K); got shape {arr.shape}")
    if arr.shape[-2] == 0:
        raise ValueError(f"{name} is empty: it has shape {arr.shape}, with n = 0 examples")
    if arr.shape[-1] == 0:
        raise ValueError(f"{name} has shape {arr.shape}, with K = 0 answer options")
    return arr


def as_mask(choice_mask: ArrayLike | None, n: int, k: int) -> NDArray[np.bool_] | None:
    """``choice_mask`` as bool (n, K), True = option present; each row needs one present option."""
    if choice_mask is None:
        return None
    mask = np.asarray(choice_mask)
    if mask.dtype != np.bool_:
        if not np.isin(mask, (0, 1)).all():
            raise ValueError(
                "choice_mask must be boolean (True = option present), got other values"
            )
        mask = mask.astype(np.bool_)
    if mask.shape != (n, k):
        raise ValueError(
            f"choice_mask has shape {mask.shape}; expected (n, K) = ({n}, {k}) to match the scores"
        )
    empty = np.flatnonzero(~mask.any(axis=1))
    if empty.size:
        raise ValueError(f"choice_mask rows {empty[:5].tolist()} have no present option")
    return mask


def as_label(
    label: ArrayLike, n: int, k: int, mask: NDArray[np.bool_] | None = None
) -> NDArray[np.intp]:
    """``label`` as intp (n,), each in 0..K-1 and, given ``mask``, a present option."""
    lab = np.asarray(label)
    if lab.shape != (n,):
        raise ValueError(f"label has shape {lab.shape}; expected (n,) = ({n},) to match the scores")
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"label must hold integer option indices 0..K-1, got dtype {lab.dtype}")
    bad = np.flatnonzero((lab < 0) | (lab >= k))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"label[{i}] = {lab[i]} is outside the option range 0..{k - 1}")
    lab = lab.astype(np.intp)
    if mask is not None:
        absent = np.flatnonzero(~mask[np.arange(n), lab])
        if absent.size:
            i = int(absent[0])
            raise ValueError(
                f"label[{i}] = {lab[i]} names an option that choice_mask marks absent "
                f"({absent.size} such labels)"
            )
    return lab


def as_conf_correct(
    conf: ArrayLike, correct: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``conf`` in [0, 1] and ``correct`` in {0, 1}, both float64 of one shape (..., n), n >= 1."""
    c = np.asarray(conf, dtype=np.float64)
    y = np.asarray(correct)
    if c.ndim == 0 or c.shape != y.shape:
        raise ValueError(
            f"conf and correct must have one shape (..., n); got {c.shape} and {y.shape}"
        )
    if c.shape[-1] == 0:
        raise ValueError("conf and correct are empty (n = 0 examples)")
    if not (np.isfinite(c).all() and c.min() >= 0.0 and c.max() <= 1.0):
        raise ValueError("conf must be finite and within [0, 1]")
    if y.dtype != np.bool_ and not np.isin(y, (0, 1)).all():
        raise ValueError("correct must be boolean or 0/1")
    return c, y.astype(np.float64)


def check_n_bins(n_bins: int) -> int:
    """``n_bins`` as a positive int."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    return int(n_bins)
