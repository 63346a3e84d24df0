"""Confidence-regulation neurons of the last block, from a store with the capture ``mlp_last``.

Every neuron gets the weight-only scan (:mod:`analyze.interventions.neuron_scan`) and its closed-
form mean ablation at the final token (:mod:`analyze.interventions.neuron_ablation`): the change
of the last depth's ECE, NLL, mean confidence and accuracy, total effect (final norm recomputed)
with paired bootstrap intervals, and direct effect (the norm's scale frozen); ``scale_mediated``
= 1 − |direct ΔNLL| / |total ΔNLL|, the share of the effect that goes through the norm's scale
(Stolfo et al.'s "fraction mediated by the LayerNorm"). Sets of neurons ablated together
(``sets``): the top-n candidates, one matched-norm control per candidate, and the whole MLP; of
each, how much of the last block's ΔECE (depth L − 1 → L) it carries:

    carried = (ECE_ablated − ECE_L) / (ECE_{L−1} − ECE_L)

(1: ablating the set undoes the block's whole change of ECE), with a bootstrap interval from the
same resamples for the three ECEs. The mean a neuron is set to is its mean over the store's
examples. With a calibration direction (``layercal direction fit``) every neuron gets the cosine
between the direction and its output weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import xarray as xr
from numpy.typing import NDArray

from analyze.calibration import bin_index, draw_weights, ece_from_sums, logit_terms, paired_deltas
from analyze.interventions.blocks import EFFECTS
from analyze.interventions.neuron_ablation import NeuronAblation, ablated_answer_logits
from analyze.interventions.neuron_scan import candidates, matched_controls, roles, weight_scan
from analyze.interventions.svd import UnembedSVD, default_k
from analyze.lens import AnswerLens

CHUNK = 256  # neurons ablated per pass (their logits: CHUNK x n x K float64)
NO_CAPTURE = (
    "this store has no mlp_last/w_out_last: it was extracted without the capture. Extract it "
    "again with `layercal extract ... --capture mlp_last` (blocks.csv needs no capture)."
)


@dataclass
class NeuronsResult:
    """``neurons``: one row per neuron; ``sets``: one row per set ablated together."""

    neurons: pl.DataFrame
    sets: pl.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)


def has_capture(ds: xr.Dataset) -> bool:
    return "mlp_last" in ds and "w_out_last" in ds


def capture_problem(ds: xr.Dataset) -> str | None:
    """Why the store's capture cannot be analysed as a·w_out writes (None: it can)."""
    if not has_capture(ds):
        return NO_CAPTURE
    post = ds.attrs.get("layercal", {}).get("capture", {}).get("mlp_last", {}).get("post_norm")
    if post:
        return (
            f"the last block normalises its MLP output ({post}) before adding it to the "
            "residual stream (Gemma 2/3, OLMo-2), so a neuron does not add a·w_out and the "
            "closed-form ablation does not apply; blocks.csv is written, the neurons are not"
        )
    return None


def _effects(stats: dict[str, Any], j: slice | int, prefix: str, ci: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, metric in EFFECTS:
        r = stats[metric]
        out[f"{prefix}d_{name}"] = r["delta"][j]
        if ci:
            out[f"{prefix}d_{name}_lo"], out[f"{prefix}d_{name}_hi"] = (
                r["delta_lo"][j],
                r["delta_hi"][j],
            )
    return out


def _per_neuron(
    ab: NeuronAblation,
    base: NDArray[np.float64],
    label: Any,
    mask: Any,
    n_bins: int,
    n_boot: int,
    seed: int,
) -> dict[str, NDArray[np.float64]]:
    """Total (with intervals) and direct effects of every neuron, CHUNK neurons at a time."""
    n_neurons = ab.w_out.shape[0]
    cols: dict[str, list[NDArray[np.float64]]] = {}
    for lo in range(0, n_neurons, CHUNK):
        idx = np.arange(lo, min(lo + CHUNK, n_neurons))
        ref = np.broadcast_to(base, (idx.size, *base.shape))
        total = paired_deltas(
            ref, ab.each(idx), label, mask, n_bins=n_bins, n_boot=n_boot, seed=seed
        )
        direct = paired_deltas(ref, ab.each(idx, frozen=True), label, mask, n_bins=n_bins, n_boot=0)
        part = _effects(total, slice(None), "", True) | _effects(
            direct, slice(None), "direct_", False
        )
        for key, v in part.items():
            cols.setdefault(key, []).append(np.asarray(v, np.float64))
    out = {key: np.concatenate(v) for key, v in cols.items()}
    tot, dire = np.abs(out["d_nll"]), np.abs(out["direct_d_nll"])
    out["scale_mediated"] = np.where(tot > 0, 1.0 - dire / np.where(tot > 0, tot, 1.0), np.nan)
    return out


def resampled_ece(
    logits: NDArray[np.float64], label: Any, mask: Any, weights: NDArray[Any], n_bins: int
) -> NDArray[np.float64]:
    """ECE of each group of ``logits`` (G, n, K) under every resample of ``weights`` (B, n):
    (B, G)."""
    terms = logit_terms(logits, label, mask)
    conf, correct = terms["mean_confidence"], terms["accuracy"]
    w = np.asarray(weights, np.float64)
    out = np.empty((w.shape[0], conf.shape[0]))
    for g in range(conf.shape[0]):
        onehot = np.eye(n_bins)[bin_index(conf[g], n_bins)]  # (n, M)
        out[:, g] = ece_from_sums(
            w @ onehot, w @ (onehot * conf[g][:, None]), w @ (onehot * correct[g][:, None])
        )
    return out


def _sets(
    chosen: list[int], controls: dict[int, list[int]], top_n: Sequence[int], n_all: int
) -> list[tuple[str, list[int]]]:
    out: list[tuple[str, list[int]]] = []
    for n in sorted({int(x) for x in top_n if 0 < int(x) <= len(chosen)}):
        out.append((f"top-{n}", chosen[:n]))
        ctrl = [controls[c][0] for c in chosen[:n] if controls.get(c)]
        if len(ctrl) == n:
            out.append((f"controls-{n}", ctrl))
    out.append(("all", list(range(n_all))))
    return out


def _set_rows(
    ab: NeuronAblation,
    lens: AnswerLens,
    base: Any,
    prev: Any,
    label: Any,
    mask: Any,
    sets: list[tuple[str, list[int]]],
    n_bins: int,
    n_boot: int,
    seed: int,
) -> list[dict[str, Any]]:
    updates = [ab.update(idx) for _, idx in sets]
    z = np.stack([ablated_answer_logits(lens, ab.h, u) for u in updates])
    zd = np.stack([ablated_answer_logits(lens, ab.h, u, frozen=True) for u in updates])
    ref = np.broadcast_to(base, z.shape)
    total = paired_deltas(ref, z, label, mask, n_bins=n_bins, n_boot=n_boot, seed=seed)
    direct = paired_deltas(ref, zd, label, mask, n_bins=n_bins, n_boot=0)
    point = resampled_ece(
        np.concatenate([prev[None], base[None], z]),
        label,
        mask,
        np.ones((1, base.shape[0])),
        n_bins,
    )[0]
    carried = (point[2:] - point[1]) / (point[0] - point[1])
    lo = hi = np.full(len(sets), np.nan)
    if n_boot > 0:
        e = resampled_ece(
            np.concatenate([prev[None], base[None], z]),
            label,
            mask,
            draw_weights(base.shape[0], n_boot, seed),
            n_bins,
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            boots = (e[:, 2:] - e[:, 1:2]) / (e[:, 0:1] - e[:, 1:2])
        lo, hi = np.nanquantile(boots, [0.025, 0.975], axis=0)
    rows = []
    for j, (name, idx) in enumerate(sets):
        row: dict[str, Any] = {
            "set": name,
            "n_neurons": len(idx),
            "ece": float(total["ece"]["new"][j]),
        }
        row |= _effects(total, j, "", True) | _effects(direct, j, "direct_", False)
        row |= {
            "carried": float(carried[j]),
            "carried_lo": float(lo[j]),
            "carried_hi": float(hi[j]),
        }
        row["neurons"] = " ".join(map(str, idx)) if len(idx) <= 50 else f"all {len(idx)}"
        rows.append({k: float(v) if isinstance(v, np.floating) else v for k, v in row.items()})
    return rows


def _cosines(w_out: NDArray[np.float64], direction: NDArray[np.floating]) -> NDArray[np.float64]:
    v = np.asarray(direction, np.float64)
    norm = np.linalg.norm(w_out, axis=1) * np.linalg.norm(v)
    return np.asarray(np.where(norm > 0, (w_out @ v) / np.where(norm > 0, norm, 1.0), 0.0))


def _cosine_meta(cos: NDArray[np.float64], chosen: list[int], d: int) -> dict[str, Any]:
    """How aligned the neurons' output weights are with the direction, against random pairs."""
    top = int(np.argmax(np.abs(cos)))
    return {
        "max_abs_cosine": float(abs(cos[top])),
        "max_abs_neuron": top,
        "candidates_mean_abs_cosine": float(np.abs(cos[chosen]).mean()) if chosen else None,
        "all_mean_abs_cosine": float(np.abs(cos).mean()),
        "random_expected": float(np.sqrt(2.0 / (np.pi * d))),  # E|cos| of random pairs
    }


def run_neurons(
    ds: xr.Dataset,
    svd: UnembedSVD,
    *,
    k: int | None = None,
    n_candidates: int = 10,
    norm_quantile: float = 0.95,
    n_controls: int = 3,
    top_n: Sequence[int] = (1, 3, 10),
    direction: NDArray[np.floating] | None = None,
    n_bins: int = 10,
    n_boot: int = 200,
    seed: int = 0,
) -> NeuronsResult:
    """Scan and ablate every neuron of the store's ``mlp_last`` (see the module docstring).

    ``direction``: a unit vector (d,) to take cosines with (None: no ``direction_cosine``)."""
    problem = capture_problem(ds)
    if problem:
        raise ValueError(problem)
    d, last = int(ds.sizes["hidden"]), int(ds.sizes["layer"]) - 1
    if svd.hidden != d:
        raise ValueError(f"the SVD has hidden size {svd.hidden}, the store {d}: not its model")
    k = default_k(d) if k is None else int(k)
    lens = AnswerLens.checked(ds)
    label = np.asarray(ds["label"].values, np.int64)
    mask = np.asarray(ds["choice_mask"].values, bool)
    h = np.asarray(ds["resid"].isel(layer=last).values, np.float64)
    prev = lens.logits(np.asarray(ds["resid"].isel(layer=last - 1).values, np.float64))
    acts = np.asarray(ds["mlp_last"].values, np.float64)
    w_out = np.asarray(ds["w_out_last"].values, np.float64)
    ab = NeuronAblation.of(lens, h, acts, w_out)
    base = lens.logits(h)

    scan = weight_scan(w_out, svd, int(ds.sizes["vocab"]), k)
    chosen = candidates(scan, n_candidates, norm_quantile)
    controls = matched_controls(scan, chosen, n_controls, seed)
    table = roles(scan, chosen, controls).with_columns(
        pl.Series("act_mean", ab.mean), pl.Series("act_std", acts.std(axis=0))
    )
    effects = _per_neuron(ab, base, label, mask, n_bins, n_boot, seed)
    table = table.with_columns(*(pl.Series(key, v) for key, v in effects.items()))
    cos_meta: dict[str, Any] | None = None
    if direction is not None:
        cos = _cosines(w_out, direction)
        table = table.with_columns(pl.Series("direction_cosine", cos))
        cos_meta = _cosine_meta(cos, chosen, d)
    sets = _sets(chosen, controls, top_n, w_out.shape[0])
    set_rows = _set_rows(ab, lens, base, prev, label, mask, sets, n_bins, n_boot, seed)
    block = paired_deltas(
        prev[None], base[None], label, mask, n_bins=n_bins, n_boot=n_boot, seed=seed
    )
    capture = ds.attrs.get("layercal", {}).get("capture", {}).get("mlp_last", {})
    meta: dict[str, Any] = {
        "k": k,
        "hidden": d,
        "neurons": int(w_out.shape[0]),
        "last_layer": last,
        "n_examples": int(label.size),
        "n_candidates": n_candidates,
        "norm_quantile": norm_quantile,
        "n_controls": n_controls,
        "candidates": chosen,
        "controls": {str(c): v for c, v in controls.items()},
        "top_n": [int(x) for x in top_n],
        "n_bins": n_bins,
        "n_boot": n_boot,
        "seed": seed,
        "capture": capture,
        "block_change": {
            "ece_before": float(block["ece"]["base"][0]),
            "ece_after": float(block["ece"]["new"][0]),
            **{key: float(v) for key, v in _effects(block, 0, "", True).items()},
        },
        "direction": cos_meta,
        "svd_cache": svd.path,
        "w_u_sha256": svd.w_u_sha256,
        "norm_kind": svd.norm_kind,
    }
    return NeuronsResult(table, pl.DataFrame(set_rows), meta)
