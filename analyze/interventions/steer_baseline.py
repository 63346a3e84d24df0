"""The unsteered baseline (*none*) of a steering run, and its check (methods.md section 6).

Offline the baseline is the logit lens on the stored residual at the last depth, the same
computation every steered value goes through. Online (a :data:`Sweeper`: the model runs with a
hook adding α·s·d at depth l), it is the **online α = 0 run**: the model's own forward through
the same code path, batches and dtype as every steered value, so that a change is the
steering's and not the difference between the model's forward and the stored lens. α = 0 adds
nothing, so that run must equal the stored lens at the last depth — the depth whose logits the
online run reads, whatever depth it steers — within the lens tolerance of the store's dtype
(or of the online model's, when coarser: :func:`layercal.lens.self_check_tolerance`). A larger
difference means the model, its dtype or the prompts are not the store's, and the run stops.

:class:`OnlineSweeps` runs the model once per (rows, α) that matters: the α = 0 logits of a set
of rows do not depend on the direction, so they are kept from the first sweep and reused for
the random-direction controls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from analyze.interventions.artifact import DirectionError
from analyze.interventions.steer_data import Splits, StoreData, Sweeper
from analyze.interventions.steer_methods import Family
from layercal.lens import self_check_tolerance


class BaselineMismatchError(DirectionError):
    """The online α = 0 run differs from the stored lens by more than the dtype's tolerance."""


class OnlineSweeps:
    """Families of steered logits from a :data:`Sweeper`, keeping each row set's α = 0 logits."""

    def __init__(self, sweeper: Sweeper, scale: float) -> None:
        self.sweeper, self.scale = sweeper, scale
        self.alpha0: dict[bytes, NDArray[np.float64]] = {}

    def family(self, vector: NDArray[np.float64]) -> Family:
        """Steering along ``vector`` by the model; α = 0 from the kept run when there is one."""

        def family(_data: StoreData, rows: NDArray[np.intp], alphas: Sequence[float]) -> Any:
            vals = [float(a) for a in alphas]
            key = np.asarray(rows, np.int64).tobytes()
            z0 = self.alpha0.get(key)
            if z0 is None or 0.0 not in vals:
                z = np.asarray(self.sweeper(rows, vector, self.scale, vals), np.float64)
                if 0.0 in vals:
                    self.alpha0[key] = z[vals.index(0.0)]
                return z
            i = vals.index(0.0)
            rest = vals[:i] + vals[i + 1 :]
            if not rest:
                return z0[None]
            z = np.asarray(self.sweeper(rows, vector, self.scale, rest), np.float64)
            return np.concatenate([z[:i], z0[None], z[i:]])

        return family

    def at_zero(self, rows: NDArray[np.intp], d: int) -> NDArray[np.float64]:
        """(len(rows), K): the α = 0 logits of ``rows`` (the model run only when not kept)."""
        key = np.asarray(rows, np.int64).tobytes()
        if key not in self.alpha0:
            self.alpha0[key] = np.asarray(self.sweeper(rows, np.zeros(d), self.scale, [0.0]))[0]
        return self.alpha0[key]


@dataclass(frozen=True)
class Baseline:
    """The *none* logits of the dev and test rows, (n_dev, K) and (n_test, K), and ``info``:
    what they are and, online, their difference from the stored lens."""

    dev: NDArray[np.float64]
    test: NDArray[np.float64]
    info: dict[str, Any]


def baseline(
    data: StoreData,
    splits: Splits,
    *,
    layer: int,
    online: OnlineSweeps | None = None,
    model_dtype: str | None = None,
) -> Baseline:
    """The baseline of a run steering at depth ``layer``: the stored lens (``online`` None) or
    the online α = 0 run, checked against the stored lens; raises
    :class:`BaselineMismatchError` naming the depths and the difference when over tolerance."""
    stored = {name: data.lens.logits(data.h[rows]) for name, rows in splits.named()}
    if online is None:
        info = {
            "kind": "stored_lens",
            "what": f"the logit lens on the stored residual at depth {data.layer}",
            "steered_layer": layer,
            "compared_layer": data.layer,
            "max_abs_diff_vs_stored": 0.0,
        }
        return Baseline(stored["dev"], stored["test"], info)
    d = data.h.shape[1]
    z0 = {name: online.at_zero(rows, d) for name, rows in splits.named()}
    diff = max(float(np.abs(z0[k] - stored[k]).max(initial=0.0)) for k in z0)
    both = np.concatenate([stored["dev"], stored["test"]])
    tol = max(self_check_tolerance(data.lens.dtype, both), self_check_tolerance(model_dtype, both))
    info = {
        "kind": "online_alpha0",
        "what": f"the model's forward with the hook at depth {layer} adding α = 0",
        "steered_layer": layer,
        "compared_layer": data.layer,
        "max_abs_diff_vs_stored": diff,
        "tolerance": tol,
        "store_dtype": data.lens.dtype or "float32",
        "model_dtype": model_dtype,
    }
    if not diff <= tol:
        raise BaselineMismatchError(
            f"online steering at depth {layer}: the α = 0 run (the hook adds nothing) differs "
            f"from the stored lens logits at depth {data.layer}, the depth the online run reads, "
            f"by {diff:.3g} (> {tol:.3g}, the tolerance of the store's dtype "
            f"{info['store_dtype']} and the model's {model_dtype}): the model, its dtype or the "
            "prompts are not the store's, and no change against that baseline would mean "
            "anything. Pass the store's model (and --dtype) to `layercal steer --online`."
        )
    return Baseline(z0["dev"], z0["test"], info)
