"""A calibration direction fit from successive-layer differences (methods.md section 5).

Layer deltas Δ[i, l] = h[i, l+1] − h[i, l] over a window of depths [start, end] of a store, on a
seeded, per-subject "fit" split of its examples, through one of the estimators of
:mod:`~analyze.interventions.estimators` (``mean``, ``pca`` — the top component of Δ centred
per layer —, ``per_layer``, ``contrast``).

Default window: the correction phase of ``analyze.calibration.landmarks`` computed on the fit
split, when its ΔECE is significant; when there is none, or it is not significant, the last
``last_m`` deltas, with a note saying why; ``window_source`` says which. A control fit — the
same estimator on an early window (:func:`~analyze.interventions.fit_data.control_window`) —
comes with every fit, so that cosines across categories and datasets can be read against what
any shared update gives (:mod:`~analyze.interventions.diagnostics`). The artifact
(:mod:`analyze.interventions.artifact`, ``Direction.save``) is a folder with ``direction.npz``
and ``direction.json``; docs/steering.md describes both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from analyze.calibration import as_str, stratified_split
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
from analyze.interventions.diagnostics import (
    category_cosines,
    compare_store,
    direct_effect,
    stability,
)
from analyze.interventions.estimators import (
    ESTIMATORS,
    N_COMPONENTS,
    Components,
    Estimator,
    Fit,
    estimate,
    spectra,
    unit,
    within_components,
)
from analyze.interventions.fit_data import (
    WindowChoice,
    choose_window,
    contrast_groups,
    control_window,
    fit_split,
    load_deltas,
    select_examples,
)
from analyze.lens import AnswerLens

__all__ = [
    "ARTIFACT_FORMAT",
    "ARTIFACT_VERSION",
    "ESTIMATORS",
    "N_COMPONENTS",
    "Direction",
    "DirectionError",
    "DirectionMismatchError",
    "Estimator",
    "Fit",
    "category_cosines",
    "check_direction",
    "compare_store",
    "estimate",
    "fit_direction",
    "fit_split",
    "select_examples",
    "spectra",
    "stratified_split",
    "unit",
]


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
    rows = _fit_rows(ds, fit_fraction, seed, category, subjects)
    lens = AnswerLens.checked(ds)
    choice = choose_window(ds, rows, lens, last_m, seed)
    auto, source, notes = _window(choice, window, int(ds.sizes["layer"]))
    deltas = load_deltas(ds, rows, auto)
    groups: dict[str, Any] = {}
    if estimator == "contrast":
        over, corr = contrast_groups(ds, rows, lens, overconfident_quantile)
        groups = {"overconfident_wrong": over, "correct": corr}
    within = within_components(deltas)  # one eigendecomposition for the pca fit and the spectra
    fit = estimate(deltas, estimator, within=within, **groups)
    ctrl_window, ctrl_rule = control_window(int(ds.sizes["layer"]), auto)
    ctrl_deltas = None if ctrl_window is None else load_deltas(ds, rows, ctrl_window)
    ctrl_within = None if ctrl_deltas is None else within_components(ctrl_deltas)
    ctrl = (
        None
        if ctrl_deltas is None
        else estimate(ctrl_deltas, estimator, within=ctrl_within, **groups)
    )
    ids = as_str(ds["example_id"].values)[rows]
    info: dict[str, Any] = {
        "format": ARTIFACT_FORMAT,
        "version": ARTIFACT_VERSION,
        "estimator": estimator,
        "window": list(auto),
        "window_source": source,
        "window_notes": notes,
        "correction_phase": choice.correction_phase,
        "last_m": last_m,
        "deltas": [[lo, lo + 1] for lo in range(auto[0], auto[1])],
        "control_window": None if ctrl_window is None else list(ctrl_window),
        "control_window_rule": ctrl_rule,
        **provenance(ds),
        "split": _split_info(seed, fit_fraction, category, subjects, ids),
        "overconfident_quantile": overconfident_quantile if estimator == "contrast" else None,
        "scale": "mean ||h[l]|| over the fit examples at every depth l (s in h + alpha*s*d)",
    }
    spec = spectra(deltas, within=within)
    d = Direction(
        fit.vector,
        choice.norms,
        ids,
        info,
        fit.per_layer,
        np.asarray(spec["explained_variance"]),
        np.asarray(spec["explained_variance_pooled"]),
        None if ctrl is None else ctrl.vector,
    )
    info["diagnostics"] = {
        **spec,
        "centring": "explained_variance: deltas centred per window layer (what pca fits); "
        "explained_variance_pooled: centred on their pooled mean",
        "stability": stability(deltas, estimator, d.vector, groups, n_boot, seed),
        "direct_effect": direct_effect(d, ds, rows, lens),
        "control": _control(ctrl_window, ctrl_rule, ctrl, ctrl_deltas, ctrl_within, d),
    }
    return d


def _fit_rows(
    ds: xr.Dataset,
    fit_fraction: float,
    seed: int,
    category: str | None,
    subjects: Sequence[str] | None,
) -> NDArray[np.intp]:
    """Store rows of the fit split within ``category``/``subjects`` (at least 2)."""
    rows = np.flatnonzero(
        select_examples(ds, category, subjects) & fit_split(ds, fit_fraction, seed)
    )
    if rows.size < 2:
        raise DirectionError(
            f"the fit split holds {rows.size} example(s); it needs at least 2. Use a larger "
            "--fit-fraction or more examples."
        )
    return rows


def _window(
    choice: WindowChoice, window: tuple[int, int] | None, n_depth: int
) -> tuple[tuple[int, int], str, list[str]]:
    """(window, its source, notes): ``window`` when given (checked), else the automatic
    choice."""
    if window is None:
        return choice.window, choice.source, choice.notes
    start, end = int(window[0]), int(window[1])
    if not 0 <= start < end <= n_depth - 1:
        raise DirectionError(f"window {window} must satisfy 0 <= start < end <= {n_depth - 1}")
    return (start, end), "explicit", []


def _split_info(
    seed: int,
    fit_fraction: float,
    category: str | None,
    subjects: Sequence[str] | None,
    ids: NDArray[Any],
) -> dict[str, Any]:
    """The artifact's record of the fit split."""
    return {
        "seed": seed,
        "fit_fraction": fit_fraction,
        "category": category,
        "subjects": list(subjects) if subjects else None,
        "n_fit": int(ids.size),
        "example_ids_sha256": ids_sha256(ids),
        "method": "per subject, seeded (analyze.direction.stratified_split)",
    }


def _control(
    window: tuple[int, int] | None,
    rule: str,
    fit: Fit | None,
    deltas: Any,
    within: Components | None,
    direction: Direction,
) -> dict[str, Any]:
    """The control fit's record: its window and rule, cosine with the direction, spectra."""
    out: dict[str, Any] = {"window": None if window is None else list(window), "rule": rule}
    if fit is not None:
        out["cosine_to_direction"] = float(fit.vector @ direction.vector)
        out |= spectra(deltas, within=within)
    return out
