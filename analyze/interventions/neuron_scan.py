"""The weight-only scan of the last block's MLP neurons (methods.md section 9), no activations.

For neuron i with output weight w_i (a row of the store's ``w_out_last``: what it adds to the
residual stream per unit of activation):

- ``norm`` = ‖w_i‖;
- ``null_share`` = ‖R_kᵀ w_i‖/‖w_i‖, its share in N_k, the null space of the effective
  unembedding W̃ (final-norm gain folded in; :mod:`analyze.interventions.svd`);
- ``logit_var`` = Var over the vocabulary of W̃ w_i, the variance of its direct logit effect (per
  unit of activation, before the final norm's per-example scale). With the vocabulary-centred
  W̃ = U Σ Rᵀ that the SVD holds, Var_v(W̃ w) = ‖Σ Rᵀ w‖² / V: exact, and no (vocab × neuron)
  matrix is formed (Qwen: 151,936 × 8,960). For LayerNorm W̃ includes the centring (the norm
  removes the mean of w_i before anything else);
- ``logit_var_unit`` = logit_var / norm²: the same for the unit direction, free of the norm.

Candidates, after Stolfo et al. 2024 ("entropy neurons": an unusually large output norm and a
small LogitVar; their code, bpwu1/confidence-regulation-neurons, plots ‖w_out‖ against LogitVar
and lists the neurons it ablates by hand): among the neurons whose norm is at least the
``norm_quantile`` quantile (default 0.95), the ``n_candidates`` (default 10) of smallest
``logit_var_unit``. Their LogitVar is the variance of cos(w_i, row v of W_U) (each unembedding row
normalised too), which needs the (vocab × neuron) product; ``logit_var_unit`` normalises w_i only,
and so follows from the SVD. Matched-norm controls: for each candidate, ``n_controls`` neurons
drawn (seeded) from the ``pool`` non-candidates nearest to it in log norm.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from analyze.interventions.svd import UnembedSVD, default_k, subspace_share

CONTROL_POOL = 20


def weight_scan(
    w_out: NDArray[np.floating], svd: UnembedSVD, vocab: int, k: int | None = None
) -> pl.DataFrame:
    """One row per neuron: ``neuron``, ``norm``, ``null_share`` (N_k, k default round(0.01 d)),
    ``logit_var``, ``logit_var_unit``. ``w_out``: (neurons, d); ``vocab``: the vocabulary size V
    of the unembedding ``svd`` is of."""
    w = np.asarray(w_out, np.float64)
    if w.ndim != 2 or w.shape[1] != svd.hidden:
        raise ValueError(f"w_out has shape {w.shape}; the unembedding has hidden size {svd.hidden}")
    k = default_k(svd.hidden) if k is None else k
    norm = np.linalg.norm(w, axis=1)
    logit_var = np.square((w @ svd.r) * svd.s).sum(axis=1) / vocab
    unit = np.where(norm > 0, logit_var / np.where(norm > 0, norm, 1.0) ** 2, 0.0)
    return pl.DataFrame(
        {
            "neuron": np.arange(w.shape[0], dtype=np.int64),
            "norm": norm,
            "null_share": subspace_share(w, svd.null_basis(k)),
            "logit_var": logit_var,
            "logit_var_unit": unit,
        }
    )


def candidates(
    scan: pl.DataFrame, n_candidates: int = 10, norm_quantile: float = 0.95
) -> list[int]:
    """Neuron ids of the candidates (see the module docstring), smallest logit_var_unit first."""
    if not 0.0 <= norm_quantile < 1.0:
        raise ValueError(f"norm_quantile must be in [0, 1), got {norm_quantile}")
    norm = scan["norm"].to_numpy()
    big = scan.filter(pl.col("norm") >= np.quantile(norm, norm_quantile))
    ranked = big.sort(["logit_var_unit", "neuron"])
    return [int(x) for x in ranked["neuron"].to_list()[: max(0, n_candidates)]]


def matched_controls(
    scan: pl.DataFrame,
    chosen: list[int],
    n_controls: int = 3,
    seed: int = 0,
    pool_size: int = CONTROL_POOL,
) -> dict[int, list[int]]:
    """{candidate: its controls}: ``n_controls`` non-candidates drawn without replacement from the
    ``pool_size`` nearest in log norm (one draw per candidate, seeded; a neuron controls at most
    one candidate)."""
    log_norm = np.log(np.maximum(scan["norm"].to_numpy(), 1e-30))
    taken = set(chosen)
    rng = np.random.default_rng([seed, 0xC0_47_201])
    out: dict[int, list[int]] = {}
    for c in chosen:
        order = np.argsort(np.abs(log_norm - log_norm[c]), kind="stable")
        pool = [int(i) for i in order if int(i) not in taken][: max(pool_size, n_controls)]
        pick = sorted(rng.choice(pool, size=min(n_controls, len(pool)), replace=False).tolist())
        out[c] = [int(i) for i in pick]
        taken.update(out[c])
    return out


def roles(scan: pl.DataFrame, chosen: list[int], controls: dict[int, list[int]]) -> pl.DataFrame:
    """``scan`` with ``role`` (candidate, control or ""), ``candidate_rank`` (1 = smallest
    logit_var_unit; null otherwise) and ``control_of`` (the candidate a control is matched to)."""
    n = scan.height
    role = [""] * n
    rank: list[Any] = [None] * n
    control_of: list[Any] = [None] * n
    for r, c in enumerate(chosen, start=1):
        role[c], rank[c] = "candidate", r
        for j in controls.get(c, []):
            role[j], control_of[j] = "control", c
    return scan.with_columns(
        pl.Series("role", role, pl.String),
        pl.Series("candidate_rank", rank, pl.Int64),
        pl.Series("control_of", control_of, pl.Int64),
    )
