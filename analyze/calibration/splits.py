"""The seeded per-subject split of a store's examples, used wherever examples are divided.

``analyze_store`` divides them into a temperature "fit" and "eval" part, the depth landmarks
into a "selection" half (where the peak-miscalibration layer is chosen) and a "test" half (where
the correction phase is measured), ``direction fit`` into the examples it fits on and the rest,
``steer`` its held-out examples into dev and test. Each use draws from its own random stream
(``stream``), so the splits are independent.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

TEMPERATURE_STREAM = 0x5B117  # analyze_store: the temperature fit / eval halves
DIRECTION_STREAM = 0xD12EC7  # direction fit (fit split) and steer (dev / test)
LANDMARK_STREAM = 0x1A2D3A  # depth landmarks: the peak's selection half / the test half


def as_str(values: Any) -> NDArray[np.str_]:
    """A fixed-width unicode array from any strings (numpy 2 StringDType does not cast)."""
    return np.array([str(v) for v in np.asarray(values).tolist()], dtype=str)


def stratified_split(
    subject: Any, example_id: Any, fraction: float, seed: int, stream: int = DIRECTION_STREAM
) -> NDArray[np.bool_]:
    """(n,) bool, True for a seeded ``fraction`` of every subject's examples (the "fit" part).

    ``subject``, ``example_id``: (n,) strings. Depends only on the example ids, the fraction,
    the seed and the stream, not on the order of the examples; ``fraction · m`` is rounded up or
    down at random so that small subjects do not all round the same way.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    subject, example_id = as_str(subject), as_str(example_id)
    rng = np.random.default_rng([seed, stream])
    out = np.zeros(subject.size, bool)
    for s in sorted(set(subject.tolist())):
        members = np.flatnonzero(subject == s)
        members = members[np.argsort(example_id[members], kind="stable")]
        n_fit = int(np.floor(fraction * members.size + rng.random()))
        out[members[rng.permutation(members.size)[:n_fit]]] = True
    return out
