"""The data types of steering, shared by the evaluation (:mod:`~analyze.interventions.steer`)
and its methods (:mod:`~analyze.interventions.steer_methods`): the stored residual a method
steers, the dev/test rows and the sweeper signature.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from analyze.calibration import as_str
from analyze.lens import AnswerLens

TABLE_METRICS = ("accuracy", "ece", "mce", "brier", "nll", "mean_confidence")

# (rows, unit vector (d,), scale s, alphas) -> answer logits (A, len(rows), K)
Sweeper = Callable[[NDArray[np.intp], NDArray[np.float64], float, Sequence[float]], NDArray[Any]]


def steer(h: NDArray[np.floating], vector: NDArray[np.floating], alpha: float, scale: float) -> Any:
    """h + α·s·d over the last axis; α = 0 returns ``h`` itself (an exact no-op)."""
    if alpha == 0.0:
        return h
    return np.asarray(h, np.float64) + (alpha * scale) * np.asarray(vector, np.float64)


@dataclass
class StoreData:
    """What steering reads from a store: the residual at one depth, labels and metadata.

    ``h``: (n, d) float64 at ``layer``; ``label`` (n,); ``mask`` (n, K); ids, subjects and
    categories (n,) str.
    """

    h: NDArray[np.float64]
    layer: int
    label: NDArray[np.int64]
    mask: NDArray[np.bool_]
    example_id: NDArray[np.str_]
    subject: NDArray[np.str_]
    category: NDArray[np.str_]
    lens: AnswerLens

    @classmethod
    def of(cls, ds: xr.Dataset, layer: int = -1) -> StoreData:
        depth = int(ds["layer"].values[layer])
        return cls(
            h=np.asarray(ds["resid"].isel(layer=layer).values, np.float64),
            layer=depth,
            label=np.asarray(ds["label"].values, np.int64),
            mask=np.asarray(ds["choice_mask"].values, bool),
            example_id=as_str(ds["example_id"].values),
            subject=as_str(ds["subject"].values),
            category=as_str(ds["category"].values),
            lens=AnswerLens.checked(ds),
        )

    @classmethod
    def at(cls, ds: xr.Dataset, depth: int) -> StoreData:
        """The data at stored depth ``depth`` (a value of the store's ``layer`` coordinate)."""
        depths = [int(x) for x in ds["layer"].values]
        if depth not in depths:
            raise ValueError(f"depth {depth} is not stored (depths {depths[0]}..{depths[-1]})")
        return cls.of(ds, depths.index(depth))

    def sweep(
        self,
        rows: NDArray[np.intp],
        vector: NDArray[np.float64],
        scale: float,
        alphas: Sequence[float],
    ) -> NDArray[np.float64]:
        """Offline :data:`Sweeper` on the stored residual: (A, len(rows), K) answer logits."""
        h = self.h[rows]
        return np.stack([self.lens.logits(steer(h, vector, a, scale)) for a in alphas])


@dataclass(frozen=True)
class Splits:
    dev: NDArray[np.intp]
    test: NDArray[np.intp]
    info: dict[str, Any]

    def named(self) -> tuple[tuple[str, NDArray[np.intp]], ...]:
        """(("dev", rows), ("test", rows))."""
        return (("dev", self.dev), ("test", self.test))
