"""Diagnostics of a fitted calibration direction (methods.md section 5).

Stability over bootstrap refits, the direct effect on the answer logits, and cosines with refits
on each category and on other stores of the same model. Each cosine comes with its **control**:
the same estimator refit on the early window of the direction (``control_window`` in its
record, :func:`analyze.interventions.fit_data.control_window`). Every layer's update shares some
direction across inputs (the residual's norm grows along a few directions whatever the text), so
a cosine of 0.99 between directions fit on two datasets says little on its own; the control's
cosine, fit the same way on layers before the correction phase, is what it is to be read against.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from analyze.calibration import answer_probs, as_str
from analyze.interventions.artifact import Direction, DirectionError, check_direction
from analyze.interventions.estimators import Estimator, Fit, estimate
from analyze.interventions.fit_data import contrast_groups, fit_split, load_deltas
from analyze.interventions.svd import effective_unembedding
from analyze.lens import AnswerLens


def stability(
    deltas: NDArray[np.float64],
    estimator: Estimator,
    vector: NDArray[np.float64],
    groups: dict[str, Any],
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """Refit on ``n_boot`` resamples of the examples: mean/min pairwise cosine and cosine to
    ``vector`` (1 = the same direction every time)."""
    if n_boot < 2:
        return {"n_boot": n_boot}
    rng = np.random.default_rng([seed, 0x57AB])
    vs = []
    for _ in range(n_boot):
        idx = rng.integers(0, deltas.shape[0], deltas.shape[0])
        try:
            vs.append(estimate(deltas[idx], estimator, **{k: v[idx] for k, v in groups.items()}))
        except DirectionError:  # a resample without one contrast group
            continue
    v = np.stack([f.vector for f in vs])
    cos = v @ v.T
    pairs = cos[np.triu_indices(len(vs), 1)]
    return {
        "n_boot": len(vs),
        "mean_pairwise_cosine": float(pairs.mean()),
        "min_pairwise_cosine": float(pairs.min()),
        "mean_cosine_to_fit": float((v @ vector).mean()),
    }


def direct_effect(
    direction: Direction, ds: xr.Dataset, rows: NDArray[np.intp], lens: AnswerLens
) -> dict[str, float]:
    """What the direction does to the answer logits at the last depth.

    ``answer_logit_spread``: std over the K options of W̃_ans d (the direct path; a shift common
    to all options changes nothing), and the same for random unit vectors (mean of 256);
    ``d_confidence_per_alpha``/``d_entropy_per_alpha``: central differences at α = ±0.1 of the
    mean confidence and entropy when h ← h + α·s·d at the last depth, on the fit examples.
    """
    last = int(ds.sizes["layer"]) - 1
    v, s = direction.at(last), direction.scale_at(last)
    w_eff = effective_unembedding(lens.w, lens.spec, center_vocab=False)
    rand = np.random.default_rng(0x5EED).normal(size=(256, v.size))
    rand /= np.linalg.norm(rand, axis=1, keepdims=True)
    h = np.asarray(ds["resid"].isel(example=rows, layer=last).values, np.float64)
    mask = np.asarray(ds["choice_mask"].values, bool)[rows]
    stats = []
    for a in (-0.1, 0.1):
        p = answer_probs(lens.logits(h + a * s * v), mask)
        ent = -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)).sum(-1)
        stats.append((p.max(-1).mean(), ent.mean()))
    return {
        "answer_logit_spread": float(np.std(w_eff @ v)),
        "answer_logit_spread_random": float(np.std(rand @ w_eff.T, axis=1).mean()),
        "d_confidence_per_alpha": float((stats[1][0] - stats[0][0]) / 0.2),
        "d_entropy_per_alpha": float((stats[1][1] - stats[0][1]) / 0.2),
    }


def refit(
    ds: xr.Dataset, rows: NDArray[np.intp], direction: Direction, window: tuple[int, int]
) -> Fit:
    """The direction's estimator refit on store ``rows`` over ``window`` (its own or the
    control's)."""
    est: Estimator = direction.info["estimator"]
    deltas = load_deltas(ds, rows, window)
    groups: dict[str, Any] = {}
    if est == "contrast":
        q = direction.info.get("overconfident_quantile") or 0.5
        over, corr = contrast_groups(ds, rows, AnswerLens.of(ds), q)
        groups = {"overconfident_wrong": over, "correct": corr}
    return estimate(deltas, est, **groups)


def control_of(direction: Direction) -> tuple[int, int] | None:
    """The control window recorded with ``direction`` (None: none, or an older artifact)."""
    w = direction.info.get("control_window")
    return None if w is None or direction.control is None else (int(w[0]), int(w[1]))


def _mean_pairwise(v: NDArray[np.float64]) -> float | None:
    if len(v) < 2:
        return None
    return float((v @ v.T)[np.triu_indices(len(v), 1)].mean())


def category_cosines(
    ds: xr.Dataset, direction: Direction, min_examples: int = 10
) -> dict[str, Any]:
    """Refit (same estimator, window, split) on each category's fit examples; cosines between
    them and with ``direction``, and the same for the control window (``*_control``; empty when
    the direction has no control). Categories with fewer than ``min_examples`` are skipped."""
    info = direction.info
    split = fit_split(ds, info["split"]["fit_fraction"], info["split"]["seed"])
    cats = as_str(ds["category"].values)
    ctrl = control_of(direction)
    names, sizes, vecs, ctrl_vecs = [], [], [], []
    for c in sorted(set(cats.tolist())):
        rows = np.flatnonzero(split & (cats == c))
        if rows.size < min_examples:
            continue
        names.append(c)
        sizes.append(int(rows.size))
        vecs.append(refit(ds, rows, direction, direction.window).vector)
        if ctrl is not None:
            ctrl_vecs.append(refit(ds, rows, direction, ctrl).vector)
    out: dict[str, Any] = {
        "categories": names,
        "n_fit": sizes,
        "matrix": [],
        "cosine_to_direction": [],
        "mean_pairwise_cosine": None,
        "control_window": None if ctrl is None else list(ctrl),
        "matrix_control": [],
        "cosine_to_control": [],
        "mean_pairwise_cosine_control": None,
    }
    if vecs:
        v = np.stack(vecs)
        out["matrix"], out["cosine_to_direction"] = (
            (v @ v.T).tolist(),
            (v @ direction.vector).tolist(),
        )
        out["mean_pairwise_cosine"] = _mean_pairwise(v)
    if ctrl_vecs and direction.control is not None:
        c = np.stack(ctrl_vecs)
        out["matrix_control"] = (c @ c.T).tolist()
        out["cosine_to_control"] = (c @ direction.control).tolist()
        out["mean_pairwise_cosine_control"] = _mean_pairwise(c)
    return out


def compare_store(direction: Direction, other: xr.Dataset, label: str) -> dict[str, Any]:
    """Refit on another store of the same model (e.g. TruthfulQA); cosine with ``direction``,
    and ``cosine_control``: the control window's refit there against the direction's control
    (None without a control)."""
    check_direction(direction, other, where=label)
    info = direction.info
    rows = np.flatnonzero(fit_split(other, info["split"]["fit_fraction"], info["split"]["seed"]))
    if rows.size < 2:
        raise DirectionError(f"{label}: its fit split holds {rows.size} example(s)")
    fit = refit(other, rows, direction, direction.window)
    ctrl = control_of(direction)
    cos_ctrl = None
    if ctrl is not None and direction.control is not None:
        cos_ctrl = float(refit(other, rows, direction, ctrl).vector @ direction.control)
    return {
        "store": label,
        "n_fit": int(rows.size),
        "cosine": float(fit.vector @ direction.vector),
        "cosine_control": cos_ctrl,
        "control_window": None if ctrl is None else list(ctrl),
    }
