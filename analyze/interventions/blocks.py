"""Which blocks write the correction: each block's update split by the unembedding's null space.

For every depth l (0 .. L − 1, L the last stored depth) the block whose input is depth l writes

    Δ_l = h[l + 1] − h[l]                         (n, d), at the final token

and Δ_l = B Bᵀ Δ_l + (I − B Bᵀ) Δ_l with B (d, k) the orthonormal basis of N_k, the null space of
the effective unembedding W̃ (final-norm gain folded in; :mod:`analyze.interventions.svd`). Per
depth, means over examples of

- ``null_share`` = ‖BᵀΔ‖/‖Δ‖ and ``row_share`` = ‖(I − BBᵀ)Δ‖/‖Δ‖ (``null_share² + row_share² =
  1`` per example; a random k-dim subspace would hold √(k/d));
- ``delta_rel`` = ‖Δ‖/‖h[L]‖: the write's size against the last residual;
- ``null_contribution`` = ⟨BᵀΔ_l, Bᵀh[L]⟩ / ‖Bᵀh[L]‖²: the block's part of the null-space content
  of the last residual. Bᵀh[L] = Bᵀh[0] + Σ_l BᵀΔ_l, so these parts and ``meta["embedding_null_
  contribution"]`` sum to 1 for every example;

and the effect on the last depth's ECE, NLL, confidence and accuracy of removing only that
block's null-space write, h[L] ← h[L] − BBᵀΔ_l, read through the logit lens (the final norm
recomputed), with paired bootstrap intervals. A control removes the block's write in a random
k-dim subspace instead (``random_d_*``: point estimates, mean over seeds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import xarray as xr
from numpy.typing import NDArray

from analyze.calibration import paired_deltas
from analyze.interventions.nullspace import random_basis
from analyze.interventions.svd import UnembedSVD, default_k
from analyze.lens import AnswerLens

# (name in the tables, metric of analyze.calibration.paired)
EFFECTS = (
    ("ece", "ece"),
    ("nll", "nll"),
    ("confidence", "mean_confidence"),
    ("accuracy", "accuracy"),
)


@dataclass
class BlocksResult:
    """``table``: one row per depth (see the module docstring); ``meta``: what was run."""

    table: pl.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)


def _norms(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(np.linalg.norm(x, axis=-1), np.float64)


def _ratio(num: NDArray[np.float64], den: NDArray[np.float64]) -> NDArray[np.float64]:
    """num / den, 0 where den is 0 (a block that writes nothing has no share anywhere)."""
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def write_shares(
    delta: NDArray[np.floating], h_last: NDArray[np.floating], basis: NDArray[np.floating]
) -> dict[str, NDArray[np.float64]]:
    """Per-example shares of one block's write ``delta`` (n, d) in span(``basis``) (d, k):
    ``null_share``, ``row_share``, ``delta_rel`` (against ``h_last`` (n, d)) and
    ``null_contribution`` (see the module docstring), each (n,)."""
    x = np.asarray(delta, np.float64)
    b = np.asarray(basis, np.float64)
    c = x @ b  # BᵀΔ
    c_last = np.asarray(h_last, np.float64) @ b
    norm = _norms(x)
    return {
        "null_share": _ratio(_norms(c), norm),
        "row_share": _ratio(_norms(x - c @ b.T), norm),
        "delta_rel": _ratio(norm, _norms(np.asarray(h_last, np.float64))),
        "null_contribution": _ratio((c * c_last).sum(-1), (c_last * c_last).sum(-1)),
    }


def without_write(
    h_last: NDArray[np.floating], delta: NDArray[np.floating], basis: NDArray[np.floating]
) -> NDArray[np.float64]:
    """h[L] − BBᵀΔ: the last residual without the block's write in span(B)."""
    b = np.asarray(basis, np.float64)
    return np.asarray(h_last, np.float64) - (np.asarray(delta, np.float64) @ b) @ b.T


def _depth_values(ds: xr.Dataset, depth: int) -> NDArray[np.float64]:
    return np.asarray(ds["resid"].isel(layer=depth).values, np.float64)


def _row(
    depth: int,
    n: int,
    k: int,
    d: int,
    shares: dict[str, list[float]],
    stats: dict[str, Any],
    rand: list[dict[str, Any]],
) -> dict[str, Any]:
    """blocks.csv's row of one block: its write's shares, the effect of removing its null-space
    write (with paired intervals) and the random-subspace control's mean effect."""
    row: dict[str, Any] = {"depth": depth, "layer": depth + 1, "n": n, "k": k}
    row.update({key: vals[depth] for key, vals in shares.items()})
    row["random_expected"] = float(np.sqrt(k / d))
    for name, metric in EFFECTS:
        r = stats[metric]
        row[f"d_{name}"] = float(r["delta"][depth])
        row[f"d_{name}_lo"] = float(r["delta_lo"][depth])
        row[f"d_{name}_hi"] = float(r["delta_hi"][depth])
    for name, metric in EFFECTS:
        vals = [float(x[metric]["delta"][depth]) for x in rand]
        row[f"random_d_{name}"] = float(np.mean(vals)) if vals else float("nan")
    return row


def run_blocks(
    ds: xr.Dataset,
    svd: UnembedSVD,
    *,
    k: int | None = None,
    n_random: int = 1,
    seed: int = 0,
    n_bins: int = 10,
    n_boot: int = 200,
) -> BlocksResult:
    """The per-depth table of an opened store (every depth; one residual depth in memory at a
    time, plus the last). ``k``: size of N_k (default round(0.01 d)); ``n_random``: random
    k-dim subspaces of the control (0: none)."""
    d, n_depth = int(ds.sizes["hidden"]), int(ds.sizes["layer"])
    if svd.hidden != d:
        raise ValueError(f"the SVD has hidden size {svd.hidden}, the store {d}: not its model")
    if n_depth < 2:
        raise ValueError("the store holds one depth: there is no block to split")
    k = default_k(d) if k is None else int(k)
    basis = svd.null_basis(k)
    randoms = [random_basis(d, k, seed + i) for i in range(n_random)]
    lens = AnswerLens.checked(ds)
    label = np.asarray(ds["label"].values, np.int64)
    mask = np.asarray(ds["choice_mask"].values, bool)
    last = n_depth - 1
    h_last = _depth_values(ds, last)
    base = lens.logits(h_last)
    ablated = np.empty((last, *base.shape))
    controls = np.empty((n_random, last, *base.shape))
    shares: dict[str, list[float]] = {}
    h0 = h = _depth_values(ds, 0)
    for depth in range(last):
        nxt = h_last if depth + 1 == last else _depth_values(ds, depth + 1)
        delta = nxt - h
        for key, v in write_shares(delta, h_last, basis).items():
            shares.setdefault(key, []).append(float(v.mean()))
        shares.setdefault("delta_norm", []).append(float(_norms(delta).mean()))
        ablated[depth] = lens.logits(without_write(h_last, delta, basis))
        for i, rb in enumerate(randoms):
            controls[i, depth] = lens.logits(without_write(h_last, delta, rb))
        h = nxt
    stats = paired_deltas(
        np.broadcast_to(base, ablated.shape),
        ablated,
        label,
        mask,
        n_bins=n_bins,
        n_boot=n_boot,
        seed=seed,
    )
    rand = [
        paired_deltas(np.broadcast_to(base, ablated.shape), c, label, mask, n_bins=n_bins, n_boot=0)
        for c in controls
    ]
    n = int(label.size)
    rows = [_row(depth, n, k, d, shares, stats, rand) for depth in range(last)]
    c0 = write_shares(h0, h_last, basis)["null_contribution"]
    last_metrics = {name: float(stats[metric]["base"][0]) for name, metric in EFFECTS}
    meta = {
        "k": k,
        "hidden": d,
        "n_depth": n_depth,
        "last_layer": last,
        "n_examples": n,
        "n_bins": n_bins,
        "n_boot": n_boot,
        "n_random": n_random,
        "seed": seed,
        "last": last_metrics,
        "embedding_null_contribution": float(c0.mean()),
        "null_share_last": float(write_shares(h_last, h_last, basis)["null_share"].mean()),
        "svd_cache": svd.path,
        "w_u_sha256": svd.w_u_sha256,
        "norm_kind": svd.norm_kind,
    }
    return BlocksResult(pl.DataFrame(rows), meta)
