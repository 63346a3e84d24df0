"""Which examples a steering run uses: its dev and test splits, and its transfer targets.

The examples the direction was fit on are never used. When the direction was fit on one
category (or subject list) present in this store, the rest of that domain is the source;
otherwise (e.g. a direction fit on another store of the same model, or on all examples) every
example of this store is. The source is split per subject (by question where there is one
subject, as in TruthfulQA), seeded, into dev (where every parameter is chosen) and test (where
everything is reported). Together with ``direction fit --fit-fraction`` this is a seeded
fit/dev/test split by question for an in-domain fit. Transfer targets are this store's
categories (rows neither fit on nor in dev) and other stores of the same model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from analyze.calibration import DIRECTION_STREAM, as_str, stratified_split
from analyze.interventions.artifact import Direction, DirectionError, check_direction, ids_sha256
from analyze.interventions.steer_data import Splits, StoreData


def steering_splits(
    data: StoreData, direction: Direction, dev_fraction: float, seed: int, limit: int | None = None
) -> Splits:
    """Dev/test rows of the source domain, never touching the direction's fit examples."""
    fit = np.isin(data.example_id, as_str(direction.fit_ids))
    src = ~fit
    split = direction.info.get("split", {})
    domain = "all examples"
    if split.get("category") and split["category"] in set(data.category.tolist()):
        src &= data.category == split["category"]
        domain = f"category {split['category']}"
    if split.get("subjects") and set(split["subjects"]) <= set(data.subject.tolist()):
        src &= np.isin(data.subject, split["subjects"])
        domain += f", subjects {split['subjects']}"
    rows = np.flatnonzero(src)
    is_dev = stratified_split(
        data.subject[rows], data.example_id[rows], dev_fraction, seed, DIRECTION_STREAM
    )
    dev, test = rows[is_dev], rows[~is_dev]
    if limit is not None:  # seeded subsample, for online runs on a CPU
        rng = np.random.default_rng([seed, 0x11A17])
        dev, test = (np.sort(rng.permutation(x)[:limit]) for x in (dev, test))
    if dev.size < 2 or test.size < 2:
        raise DirectionError(
            f"steering needs examples for dev and test; the source domain ({domain}) has "
            f"{rows.size} held out from the fit ({int(fit.sum())} were fit on). Use a larger "
            "store, or a direction fit on a smaller --fit-fraction."
        )
    info = {
        "source": domain,
        "seed": seed,
        "dev_fraction": dev_fraction,
        "excluded_fit_examples": int(fit.sum()),
        "n_dev": int(dev.size),
        "n_test": int(test.size),
        "dev_ids_sha256": ids_sha256(data.example_id[dev]),
        "test_ids_sha256": ids_sha256(data.example_id[test]),
        "limit": limit,
    }
    return Splits(dev, test, info)


def held_out(
    data: StoreData, direction: Direction, splits: Splits | None, keep: NDArray[np.bool_]
) -> NDArray[np.intp]:
    """Rows of ``keep`` neither fit on nor used to choose α (the dev split)."""
    out = keep & ~np.isin(data.example_id, as_str(direction.fit_ids))
    if splits is not None:
        out[splits.dev] = False
    return np.flatnonzero(out)


def transfer_targets(
    data: StoreData,
    splits: Splits,
    direction: Direction,
    transfer: Sequence[tuple[str, xr.Dataset]],
    read: int,
) -> list[tuple[str, StoreData, NDArray[np.intp]]]:
    """Transfer targets: this store's categories (held-out rows), then the other stores, each
    read at depth ``read`` (that of ``data``)."""
    targets = [
        (f"category {c}", data, held_out(data, direction, splits, data.category == c))
        for c in sorted(set(data.category.tolist()))
    ]
    for label, other in transfer:
        check_direction(direction, other, where=label)
        od = StoreData.at(other, read)
        targets.append((label, od, held_out(od, direction, None, np.ones(od.label.size, bool))))
    return targets
