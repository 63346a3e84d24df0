"""Per-depth fit diagnostics of a lens, on held-out examples: KL to final and top-1 agreement.

Every example is scored through the translator of its own fold (fitted without it), on that
fold's token set (:mod:`.tokens`): KL(final || lens) with both distributions renormalised over
the set, and whether the lens's most probable token of the set is the final distribution's most
probable token of the whole vocabulary. The logit lens is scored the same way beside it, and the
share of the final probability inside the set says how much of the final distribution the set
covers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from analyze.lens.fitted.tokens import set_log_probs

COLUMNS = (
    "kl_to_final",
    "top1_agreement",
    "kl_to_final_logit",
    "top1_agreement_logit",
    "final_mass_in_set",
)


class DepthScores:
    """Sums of the diagnostics over the folds' held-out examples at one depth."""

    def __init__(self) -> None:
        self.sums = dict.fromkeys(COLUMNS, 0.0)
        self.n = 0

    def add(
        self,
        lens_z: NDArray[np.float64],
        logit_z: NDArray[np.float64],
        final_z: NDArray[np.float64],
        ids: NDArray[np.int64],
        final_top1: NDArray[np.int64],
        final_lse: NDArray[np.float64],
    ) -> None:
        """One fold's held-out examples: ``lens_z``, ``logit_z``, ``final_z`` (m, S) logits on
        the fold's token set ``ids`` (S,); ``final_top1``, ``final_lse`` (m,) of the whole
        vocabulary."""
        log_p = set_log_probs(final_z)
        p = np.exp(log_p)
        for tag, z in (("", lens_z), ("_logit", logit_z)):
            log_q = set_log_probs(z)
            self.sums[f"kl_to_final{tag}"] += float(np.sum(p * (log_p - log_q)))
            self.sums[f"top1_agreement{tag}"] += float(np.sum(ids[z.argmax(axis=1)] == final_top1))
        top = final_z.max(axis=1)
        in_set = top + np.log(np.exp(final_z - top[:, None]).sum(axis=1)) - final_lse
        self.sums["final_mass_in_set"] += float(np.minimum(np.exp(in_set), 1.0).sum())
        self.n += int(final_z.shape[0])

    def row(self, layer: int) -> dict[str, Any]:
        """The depth's diagnostics (means over every example of the store)."""
        return {"layer": int(layer), **{k: v / max(self.n, 1) for k, v in self.sums.items()}}
