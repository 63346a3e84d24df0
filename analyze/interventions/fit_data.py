"""What ``direction fit`` reads from a store: the examples to fit on, the depth window, the
layer deltas and the contrast groups."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from analyze.calibration import (
    DIRECTION_STREAM,
    answer_probs,
    as_str,
    chance_accuracy,
    depth_landmarks,
    selection_half,
    stratified_split,
)
from analyze.interventions.artifact import DirectionError
from analyze.lens import AnswerLens


def conf_correct(
    z: NDArray[np.float64], label: NDArray[Any], mask: NDArray[np.bool_]
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    p = answer_probs(z, mask)
    return p.max(axis=-1), p.argmax(axis=-1) == label


def select_examples(
    ds: xr.Dataset, category: str | None = None, subjects: Sequence[str] | None = None
) -> NDArray[np.bool_]:
    """(n,) bool: examples of ``category`` and of ``subjects`` (None: no restriction)."""
    keep = np.ones(int(ds.sizes["example"]), bool)
    if category is not None:
        cats = as_str(ds["category"].values)
        if category not in set(cats.tolist()):
            raise DirectionError(
                f"no example of category {category!r} in the store; it has {sorted(set(cats))}"
            )
        keep &= cats == category
    if subjects:
        subj = as_str(ds["subject"].values)
        unknown = sorted(set(subjects) - set(subj.tolist()))
        if unknown:
            raise DirectionError(f"subjects {unknown} are not in the store")
        keep &= np.isin(subj, list(subjects))
    return keep


def fit_split(ds: xr.Dataset, fraction: float, seed: int) -> NDArray[np.bool_]:
    """The seeded per-subject fit split over all of the store's examples, (n,) bool."""
    subject, example_id = ds["subject"].values, ds["example_id"].values
    return stratified_split(subject, example_id, fraction, seed, DIRECTION_STREAM)


@dataclass(frozen=True)
class WindowChoice:
    """The default fit window: ``window`` (start, end) depths, ``source`` (``correction_phase``
    or ``last_m``), ``notes`` (why a fallback was used), ``norms`` (L,) the mean residual norm
    per depth, ``correction_phase`` the landmark's record on the fit split (None: none found)."""

    window: tuple[int, int]
    source: str
    notes: list[str]
    norms: NDArray[np.float64]
    correction_phase: dict[str, Any] | None


def choose_window(
    ds: xr.Dataset, rows: NDArray[np.intp], lens: AnswerLens, last_m: int, seed: int
) -> WindowChoice:
    """The correction phase on ``rows`` when its ΔECE is significant, else the last ``last_m``
    deltas with notes saying why; and the mean residual norm per depth.

    Reads every depth of ``rows`` once: for the norms and for the landmarks on those examples
    (chance = mean 1/K_i of those examples; the peak chosen on one half of them, the phase
    tested on the other). A correction phase that is not a significant fall in ECE is never
    used silently: a window chosen from noise would make the direction look like it explains a
    phase that may not be there.
    """
    n_depth = int(ds.sizes["layer"])
    label = np.asarray(ds["label"].values)[rows]
    mask = np.asarray(ds["choice_mask"].values, bool)[rows]
    conf, correct = np.empty((n_depth, rows.size)), np.empty((n_depth, rows.size))
    norms = np.empty(n_depth)
    for layer in range(n_depth):
        h = np.asarray(ds["resid"].isel(example=rows, layer=layer).values, np.float64)
        norms[layer] = np.linalg.norm(h, axis=-1).mean()
        conf[layer], correct[layer] = conf_correct(lens.logits(h), label, mask)
    fallback = (max(0, n_depth - 1 - last_m), n_depth - 1)
    subject, example_id = (np.asarray(ds[k].values)[rows] for k in ("subject", "example_id"))
    marks = depth_landmarks(
        np.arange(n_depth),
        conf,
        correct,
        chance=chance_accuracy(mask),
        selection=selection_half(subject, example_id, seed),
        n_boot=200,
        seed=seed,
    )
    cp = marks.get("correction_phase")
    back = f"fell back to the last {last_m} layers"
    if not cp:
        notes = [str(x) for x in marks.get("notes", [])] or ["no correction phase"]
        return WindowChoice(fallback, "last_m", [*notes, back], norms, None)
    cp = dict(cp)
    if not (cp["significant"] and cp["delta_ece"] < 0):
        why = (
            f"the correction phase ({cp['start']}, {cp['end']}] of the fit examples is not a "
            f"significant fall in ECE (ΔECE {cp['delta_ece']:+.3f}, 95% interval "
            f"[{cp['delta_ece_lo']:+.3f}, {cp['delta_ece_hi']:+.3f}] on {cp['n_test']} test "
            "examples), so it is not used as the window"
        )
        return WindowChoice(fallback, "last_m", [why, back], norms, cp)
    return WindowChoice((int(cp["start"]), int(cp["end"])), "correction_phase", [], norms, cp)


def control_window(n_depth: int, window: tuple[int, int]) -> tuple[tuple[int, int] | None, str]:
    """The early window of the control fit, and the rule that chose it, for a fit ``window``.

    The same number of deltas m = end − start as the window, starting at a quarter of the depth
    (round((L − 1) / 4)); moved earlier to end where the window starts when they would overlap
    (then it may hold fewer deltas). None when the window starts at depth 0: nothing is earlier.
    """
    start, end = window
    m = end - start
    q = round((n_depth - 1) / 4)
    rule = (
        f"the same number of deltas as the window ({m}) starting at a quarter of the depth "
        f"(round((L - 1) / 4) = {q})"
    )
    c_end = min(q + m, start)
    c_start = max(0, c_end - m)
    if c_end - c_start < 1:
        return None, f"{rule}: none, the window starts at depth {start}"
    if c_end < q + m:
        rule += f", moved earlier to end at the window's start ({start})"
    return (c_start, c_end), rule


def load_deltas(ds: xr.Dataset, rows: NDArray[np.intp], window: tuple[int, int]) -> NDArray[Any]:
    """Δ (n, m, d) float64 = h[l+1] − h[l] for l in start..end−1, for the store rows given."""
    start, end = window
    h = np.asarray(ds["resid"].isel(example=rows, layer=slice(start, end + 1)).values, np.float64)
    return np.diff(h, axis=1)


def contrast_groups(
    ds: xr.Dataset, rows: NDArray[np.intp], lens: AnswerLens, quantile: float
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(overconfident-wrong, correct) masks over ``rows`` at the last depth."""
    h = np.asarray(ds["resid"].isel(example=rows, layer=-1).values, np.float64)
    label = np.asarray(ds["label"].values)[rows]
    conf, correct = conf_correct(lens.logits(h), label, ds["choice_mask"].values[rows])
    return ~correct & (conf >= np.quantile(conf, quantile)), correct
