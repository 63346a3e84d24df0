"""A calibration direction fit from successive-layer differences (methods.md section 5).

Layer deltas Δ[i, l] = h[i, l+1] − h[i, l] over a window of depths [start, end] of a store, on a
seeded, per-subject "fit" split of its examples. Estimators (each returns a unit vector (d,)):

- ``mean``: the mean of Δ over examples and window layers;
- ``pca``: the top principal component of the stacked, centred Δ (n·m, d), sign-aligned with
  the mean; its explained-variance spectrum is kept (evidence of a low-dimensional update);
- ``per_layer``: the mean of Δ at each window layer (m, d); the main vector is the last one's;
- ``contrast``: mean Δ of overconfident-wrong examples (wrong at the last depth, confidence at
  or above the fit split's ``overconfident_quantile``) minus mean Δ of correct examples.

Default window: the correction phase of ``analyze.calibration.landmarks`` computed on the fit split,
when it is a significant fall in ECE; otherwise the last ``last_m`` deltas; ``window_source``
says which and ``window_notes`` why. The artifact (:mod:`analyze.interventions.artifact`, ``Direction.save``) is a folder with ``direction.npz`` and
``direction.json``; docs/steering.md describes both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from analyze.calibration import answer_probs, as_str, stratified_split
from analyze.interventions.artifact import (
    ARTIFACT_FORMAT,
    ARTIFACT_VERSION,
    Direction,
    DirectionError,
    DirectionMismatchError,
    check_direction,
    ids_sha256,
    provenance,
)
from analyze.interventions.fit_data import (
    choose_window,
    contrast_groups,
    fit_split,
    load_deltas,
    select_examples,
)
from analyze.interventions.svd import effective_unembedding
from analyze.lens import AnswerLens

__all__ = [
    "ARTIFACT_FORMAT",
    "ARTIFACT_VERSION",
    "ESTIMATORS",
    "Direction",
    "DirectionError",
    "DirectionMismatchError",
    "Estimator",
    "category_cosines",
    "check_direction",
    "compare_store",
    "estimate",
    "fit_direction",
    "fit_split",
    "select_examples",
    "stratified_split",
]

Estimator = Literal["mean", "pca", "per_layer", "contrast"]
ESTIMATORS: tuple[Estimator, ...] = ("mean", "pca", "per_layer", "contrast")
N_COMPONENTS = 10  # explained-variance spectrum kept for pca


def unit(v: NDArray[np.floating]) -> NDArray[np.float64]:
    """v / ‖v‖ (float64); a zero vector is an error (no direction to speak of)."""
    x = np.asarray(v, np.float64)
    n = float(np.linalg.norm(x))
    if not n > 0:
        raise DirectionError("the estimated direction is the zero vector: nothing to normalise")
    return x / n


@dataclass(frozen=True)
class Fit:
    """One estimate: ``vector`` (d,) unit; ``per_layer`` (m, d) or None; ``explained`` (r,)."""

    vector: NDArray[np.float64]
    per_layer: NDArray[np.float64] | None = None
    explained: NDArray[np.float64] | None = None


def estimate(
    deltas: NDArray[np.floating],
    estimator: Estimator,
    *,
    overconfident_wrong: NDArray[np.bool_] | None = None,
    correct: NDArray[np.bool_] | None = None,
) -> Fit:
    """Fit a direction from ``deltas`` (n, m, d); ``contrast`` also needs the two (n,) masks."""
    x = np.asarray(deltas, np.float64)
    if x.ndim != 3 or 0 in x.shape:
        raise DirectionError(f"deltas must have shape (n, m, d) with n, m, d >= 1; got {x.shape}")
    mean = x.mean(axis=(0, 1))
    if estimator == "mean":
        return Fit(unit(mean))
    if estimator == "per_layer":
        rows = np.stack([unit(r) for r in x.mean(axis=0)])
        return Fit(rows[-1], per_layer=rows)
    if estimator == "pca":
        flat = x.reshape(-1, x.shape[-1])
        centred = flat - flat.mean(axis=0)
        evals, evecs = np.linalg.eigh(centred.T @ centred)  # ascending; d x d, cheap
        evals = np.clip(evals[::-1], 0.0, None)
        top = evecs[:, -1]
        top = top if top @ mean >= 0 else -top
        return Fit(unit(top), explained=evals[:N_COMPONENTS] / max(evals.sum(), 1e-300))
    if estimator == "contrast":
        if overconfident_wrong is None or correct is None:
            raise DirectionError("the contrast estimator needs overconfident_wrong and correct")
        if not overconfident_wrong.any() or not correct.any():
            raise DirectionError(
                f"the contrast estimator needs both groups in the fit split; it has "
                f"{int(overconfident_wrong.sum())} overconfident-wrong and {int(correct.sum())} "
                "correct examples. Use more examples (--fit-fraction) or another --estimator."
            )
        return Fit(unit(x[overconfident_wrong].mean(axis=(0, 1)) - x[correct].mean(axis=(0, 1))))
    raise DirectionError(f"unknown estimator {estimator!r}; choose one of {ESTIMATORS}")


def fit_direction(
    ds: xr.Dataset,
    *,
    estimator: Estimator = "mean",
    window: tuple[int, int] | None = None,
    last_m: int = 5,
    fit_fraction: float = 0.5,
    seed: int = 0,
    category: str | None = None,
    subjects: Sequence[str] | None = None,
    overconfident_quantile: float = 0.5,
    n_boot: int = 20,
) -> Direction:
    """Fit a direction on the fit split of ``ds`` (restricted to ``category``/``subjects``).

    ``window``: (start, end) depths, deltas h[l+1] − h[l] for start <= l < end; None = the
    correction phase on the fit split when significant, else the last ``last_m`` deltas. ``n_boot``: bootstrap
    refits for the stability diagnostic (0 = skip). Diagnostics land in ``info["diagnostics"]``.
    """
    if estimator not in ESTIMATORS:
        raise DirectionError(f"unknown estimator {estimator!r}; choose one of {ESTIMATORS}")
    n_depth = int(ds.sizes["layer"])
    rows = np.flatnonzero(
        select_examples(ds, category, subjects) & fit_split(ds, fit_fraction, seed)
    )
    if rows.size < 2:
        raise DirectionError(
            f"the fit split holds {rows.size} example(s); it needs at least 2. Use a larger "
            "--fit-fraction or more examples."
        )
    lens = AnswerLens.checked(ds)
    auto, source, notes, norms = choose_window(ds, rows, lens, last_m, seed)
    if window is not None:
        start, end = int(window[0]), int(window[1])
        if not 0 <= start < end <= n_depth - 1:
            raise DirectionError(f"window {window} must satisfy 0 <= start < end <= {n_depth - 1}")
        auto, source, notes = (start, end), "explicit", []
    deltas = load_deltas(ds, rows, auto)
    groups: dict[str, Any] = {}
    if estimator == "contrast":
        over, corr = contrast_groups(ds, rows, lens, overconfident_quantile)
        groups = {"overconfident_wrong": over, "correct": corr}
    fit = estimate(deltas, estimator, **groups)
    ids = as_str(ds["example_id"].values)[rows]
    info: dict[str, Any] = {
        "format": ARTIFACT_FORMAT,
        "version": ARTIFACT_VERSION,
        "estimator": estimator,
        "window": list(auto),
        "window_source": source,
        "window_notes": notes,
        "last_m": last_m,
        "deltas": [[lo, lo + 1] for lo in range(auto[0], auto[1])],
        **provenance(ds),
        "split": {
            "seed": seed,
            "fit_fraction": fit_fraction,
            "category": category,
            "subjects": list(subjects) if subjects else None,
            "n_fit": int(rows.size),
            "example_ids_sha256": ids_sha256(ids),
            "method": "per subject, seeded (analyze.direction.stratified_split)",
        },
        "overconfident_quantile": overconfident_quantile if estimator == "contrast" else None,
        "scale": "mean ||h[l]|| over the fit examples at every depth l (s in h + alpha*s*d)",
    }
    spectrum = fit.explained if fit.explained is not None else estimate(deltas, "pca").explained
    d = Direction(fit.vector, norms, ids, info, fit.per_layer, spectrum)
    info["diagnostics"] = {
        "explained_variance": [] if spectrum is None else spectrum.tolist(),
        "stability": stability(deltas, estimator, d.vector, groups, n_boot, seed),
        "direct_effect": direct_effect(d, ds, rows, lens),
    }
    return d


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


def category_cosines(
    ds: xr.Dataset, direction: Direction, min_examples: int = 10
) -> dict[str, Any]:
    """Refit (same estimator, window, split) on each category's fit examples; cosines between
    them and with ``direction``. Categories with fewer than ``min_examples`` are skipped."""
    info = direction.info
    split = fit_split(ds, info["split"]["fit_fraction"], info["split"]["seed"])
    cats = as_str(ds["category"].values)
    names, vecs, sizes = [], [], []
    for c in sorted(set(cats.tolist())):
        rows = np.flatnonzero(split & (cats == c))
        if rows.size < min_examples:
            continue
        names.append(c)
        sizes.append(int(rows.size))
        vecs.append(_refit(ds, rows, direction).vector)
    if not vecs:
        return {"categories": [], "n_fit": [], "matrix": [], "cosine_to_direction": []}
    v = np.stack(vecs)
    return {
        "categories": names,
        "n_fit": sizes,
        "matrix": (v @ v.T).tolist(),
        "cosine_to_direction": (v @ direction.vector).tolist(),
    }


def _refit(ds: xr.Dataset, rows: NDArray[np.intp], direction: Direction) -> Fit:
    est: Estimator = direction.info["estimator"]
    deltas = load_deltas(ds, rows, direction.window)
    groups: dict[str, Any] = {}
    if est == "contrast":
        q = direction.info.get("overconfident_quantile") or 0.5
        over, corr = contrast_groups(ds, rows, AnswerLens.of(ds), q)
        groups = {"overconfident_wrong": over, "correct": corr}
    return estimate(deltas, est, **groups)


def compare_store(direction: Direction, other: xr.Dataset, label: str) -> dict[str, Any]:
    """Refit on another store of the same model (e.g. TruthfulQA); cosine with ``direction``."""
    check_direction(direction, other, where=label)
    info = direction.info
    rows = np.flatnonzero(fit_split(other, info["split"]["fit_fraction"], info["split"]["seed"]))
    if rows.size < 2:
        raise DirectionError(f"{label}: its fit split holds {rows.size} example(s)")
    fit = _refit(other, rows, direction)
    return {"store": label, "n_fit": int(rows.size), "cosine": float(fit.vector @ direction.vector)}
