"""The computation of ``analyze_store`` once the store is open and the parameters checked, in
named steps: the one pass over ``resid`` (:func:`read_pass`), the ECE floor's simulation shared
by every table (:func:`floor_cells`), the per-layer metrics, group tables and intervals, the
landmarks (:func:`landmarks`), then the tables, meta and per-example arrays of the result.

Temperature scaling, the per-layer endpoints and the landmarks run in two threads beside the
group table (numpy, GIL mostly released; BLAS held to one thread meanwhile). Shapes: L layers, n analysed examples, K options, B resamples.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import xarray as xr
from numpy.typing import NDArray

from analyze._pass import bootstrap_graph, one_blas_thread, read_once, terms_graph
from analyze._tables import group_metrics, nanmean0, select_examples, store_meta
from analyze.calibration import (
    LANDMARK_EXTRA_DEFINITIONS,
    best_constant_chance,
    bin_sums,
    bootstrap_intervals,
    cell_floor_sums,
    chance_accuracy,
    depth_landmarks,
    ece_floor_from_uniforms,
    endpoint_rows,
    floor_of_cells,
    floor_uniforms,
    landmark_extras,
    metrics_from_terms,
    selection_half,
    temperature_columns,
)
from analyze.lens import (
    VOCAB_CHUNK,
    full_vocab_arrays,
    lens_pass,
    option_mass_one_source,
    recorded_checks,
)
from analyze.lens.fitted import BoundLens
from analyze.lens.fitted.compare import lens_contrasts, with_lens
from analyze.results import INTERVAL_METRICS, LAYER_COLUMNS, AnalysisResult, metric_definitions

CONF_HIST_BINS = 20
TEMPERATURE_COLUMNS = ("temperature", "ece_temperature_scaled", "nll_temperature_scaled")
Clock = tuple[float, float]


@dataclass
class Pass:
    """What the pass over ``resid`` gives, with the examples it was computed for.

    ``frame``, ``mask`` (n_store, K), ``is_fit``, ``in_vocab``, ``label``: every example of the
    store; ``rows``: the analysed ones; ``z`` (n_store, L, K) answer logits, ``lse`` and
    ``vent`` (n_store, L) nan where not sampled; ``recorded``: the lens values recorded at
    extraction; ``terms`` (T, L, n) the per-example terms of the analysed examples; ``sums``
    their bootstrap sums; ``weights_t`` (n, B) their draw counts as float32; ``bound``: the
    fitted lens every number is read through (None: the logit lens)."""

    frame: pl.DataFrame
    mask: NDArray[np.bool_]
    is_fit: NDArray[np.bool_]
    rows: NDArray[np.intp]
    in_vocab: NDArray[np.bool_]
    label: NDArray[np.int64]
    z: NDArray[np.float64]
    lse: NDArray[np.float64]
    vent: NDArray[np.float64]
    recorded: xr.Dataset
    terms: NDArray[np.float64]
    sums: NDArray[np.float64]
    weights_t: NDArray[np.float32]
    bound: BoundLens | None = None


def clock() -> Clock:
    return time.perf_counter(), time.process_time()


def lap(timing: dict[str, float], name: str, start: Clock) -> Clock:
    """Record wall and CPU seconds (all threads) since ``start`` as name_s, name_cpu_s."""
    now = clock()
    timing[f"{name}_s"], timing[f"{name}_cpu_s"] = now[0] - start[0], now[1] - start[1]
    return now


def read_pass(
    ds: xr.Dataset,
    small: xr.Dataset,
    params: dict[str, Any],
    timing: dict[str, float],
    bound: BoundLens | None = None,
) -> Pass:
    """The examples, then the one read of resid with everything computed chunk by chunk as it
    is read (the lens, the per-example terms, the bootstrap sums); stages prepare, lens_pass."""
    t = clock()
    frame, mask, is_fit, rows, in_vocab = select_examples(small, params)
    label = frame["label"].to_numpy()
    boot = params["bootstrap"]
    lensed, scale = (ds, None) if bound is None else bound.lensed(ds)
    lazy = lens_pass(lensed, in_vocab, scale=scale)
    terms_lazy = terms_graph(lazy["answer_logits"].data, label, mask)
    extra = (terms_lazy, *bootstrap_graph(terms_lazy, rows, boot, params["bins"]))
    t = lap(timing, "prepare", t)
    out, recorded, (terms, sums, w_store) = read_once(lazy, small, frame, mask, extra)
    z = out["answer_logits"].values  # (n, L, K)
    lse, vent = full_vocab_arrays(out)  # (n, L), nan where not sampled
    lap(timing, "lens_pass", t)
    return Pass(
        frame,
        mask,
        is_fit,
        rows,
        in_vocab,
        label,
        z,
        lse,
        vent,
        recorded,
        terms=terms[..., rows],  # (T, L, n)
        sums=sums,
        weights_t=np.ascontiguousarray(w_store[rows], np.float32),  # (n, B) draw counts
        bound=bound,
    )


def floor_cells(
    analysed: pl.DataFrame, conf: NDArray[np.float64], uniforms: NDArray[np.float64], params: Any
) -> tuple[NDArray[np.int32], NDArray[np.float64], NDArray[np.intp]]:
    """The floor's draws summed per cell of the group-bys, so every table's floor comes from one
    simulation (cells: the combinations of the group-by columns among the analysed examples):
    ``cell_floor_sums`` and the cell of each example."""
    group_by = params["group_by"]
    cells = (
        np.unique(analysed.select(group_by).to_numpy().astype(str), axis=0, return_inverse=True)[
            1
        ].ravel()
        if group_by
        else np.zeros(conf.shape[1], np.intp)
    )
    y_sums, c_sums = cell_floor_sums(conf, uniforms, cells, int(cells.max()) + 1, params["bins"])
    return y_sums, c_sums, cells


def landmarks(
    p: Pass,
    analysed: pl.DataFrame,
    lay: list[int],
    accuracy_lo: NDArray[np.float64],
    uniforms: NDArray[np.float64],
    params: dict[str, Any],
) -> dict[str, Any]:
    """landmarks.json: the depth landmarks, their bootstrap intervals and the plateau-to-last
    contrast, the correction phase's floors, and every definition."""
    bins, boot = params["bins"], params["bootstrap"]
    correct, conf, brier, nll = p.terms[:4]
    # the peak is chosen on one half of the analysed examples and tested on the other
    selection = selection_half(
        analysed["subject"].to_numpy(), analysed["example_id"].to_numpy(), boot["seed"]
    )
    chance = chance_accuracy(p.mask[p.rows])
    marks = depth_landmarks(
        lay,
        conf,
        correct,
        chance=chance,
        selection=selection,
        accuracy_lo=accuracy_lo,
        n_bins=bins,
        n_boot=boot["n_boot"],
        seed=boot["seed"],
        alpha=boot["alpha"],
        scores={"nll": nll, "brier": brier},
    )
    marks.update(
        landmark_extras(
            lay,
            conf,
            correct,
            nll,
            brier,
            selection,
            p.weights_t.T,
            chance=chance,
            chance_best_constant=best_constant_chance(p.label[p.rows], p.mask[p.rows]),
            accuracy_lo=accuracy_lo,
            n_bins=bins,
            alpha=boot["alpha"],
        )
    )
    _phase_floors(marks, conf, uniforms, selection, lay, bins)
    marks["definitions"].update(LANDMARK_EXTRA_DEFINITIONS)
    marks["definitions"].update(metric_definitions(bins, params["mce_min_count"]))
    return marks


def _phase_floors(
    marks: dict[str, Any],
    conf: NDArray[np.float64],
    uniforms: NDArray[np.float64],
    selection: NDArray[np.bool_],
    layers: list[int],
    bins: int,
) -> None:
    """ece_floor_start/ece_floor_end of the correction phase: the floor of its test half at
    both ends (the same draws as every other floor, restricted to those examples)."""
    cp = marks.get("correction_phase")
    if not cp:
        return
    test = ~selection
    at = [layers.index(cp["start"]), layers.index(cp["end"])]
    floors = ece_floor_from_uniforms(conf[at][:, test], uniforms[:, test], bins)
    cp["ece_floor_start"], cp["ece_floor_end"] = float(floors[0]), float(floors[1])


def compute(
    ds: xr.Dataset,
    small: xr.Dataset,
    params: dict[str, Any],
    url: str,
    bound: BoundLens | None = None,
) -> AnalysisResult:
    """The AnalysisResult of the (already selected) store views ``ds`` and ``small``, read
    through ``bound`` (a fitted lens bound to them; None: the logit lens)."""
    timing: dict[str, float] = {}
    p = read_pass(ds, small, params, timing, bound)
    with one_blas_thread():  # the steps below run in three threads on as many cores as there are
        return _after_pass(p, ds, params, url, timing)


def _after_pass(
    p: Pass, ds: xr.Dataset, params: dict[str, Any], url: str, timing: dict[str, float]
) -> AnalysisResult:
    """Everything after the pass: metrics, tables, landmarks, temperature, meta."""
    t = clock()
    bins, min_count, boot = params["bins"], params["mce_min_count"], params["bootstrap"]
    rows, lay = p.rows, [int(x) for x in ds["layer"].values]
    if p.bound is None:
        checks, warnings = recorded_checks(p.recorded, p.z, p.lse, p.vent)
    else:  # checked at the last depth only; the recorded lse and entropy are the logit lens's
        checks, warnings, p.recorded = p.bound.checks(p.recorded, p.z, p.lse, p.vent)
    mass = _option_mass(p)
    correct, conf = p.terms[0], p.terms[1]
    uniforms = floor_uniforms(rows.size, params["floor_simulations"], boot["seed"])
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="analysis")
    temp_future = pool.submit(
        temperature_columns, np.moveaxis(p.z, 1, 0), p.label, p.mask, p.is_fit, bins
    )
    analysed = p.frame[rows.tolist()]
    floor = floor_cells(analysed, conf, uniforms, params)
    ends_future = pool.submit(
        endpoint_rows,
        conf,
        correct,
        n_bins=bins,
        ece_floor=floor_of_cells(floor[0], floor[1], np.arange(floor[1].shape[1]), rows.size),
        weights=p.weights_t.T,
        weights_t=p.weights_t,
        alpha=boot["alpha"],
    )
    ci = bootstrap_intervals(p.sums, rows.size, len(lay), bins, boot["alpha"], min_count)
    # queued behind temperature scaling (the shorter of the two), beside the group table
    marks_future = pool.submit(landmarks, p, analysed, lay, ci["accuracy"][0], uniforms, params)
    m = metrics_from_terms(p.terms, bins, min_count)
    by_group = group_metrics(
        analysed,
        conf,
        correct,
        p.terms[2],
        p.terms[3],
        lay,
        params["group_by"],
        bins,
        min_count,
        floor=floor,
        weights_t=p.weights_t if params["group_intervals"] else None,
        alpha=boot["alpha"],
    )
    t = lap(timing, "metrics_groups", t)
    temp, temp_info = temp_future.result()
    ends, marks = ends_future.result(), marks_future.result()
    pool.shutdown()
    lap(timing, "landmarks_temperature", t)
    cols = {**m, **{k: temp[k] for k in (*TEMPERATURE_COLUMNS, "ece_eval", "nll_eval")}, **ends}
    layers_df = _layer_table(p, mass, lay, cols, ci)
    if "lens" in params:  # a named lens: the lens column and the fixed-depth contrasts
        layers_df = _with_lens(p, analysed, lay, layers_df, marks, params)
    meta = store_meta(ds, url, params, rows.size, lay)
    meta.update(checks=checks, warnings=warnings + temp_info.pop("warnings"), timing=timing)
    at_bound = [lay[i] for i in temp_info.pop("at_bound", [])]
    meta["temperature"] = {"fit_on": "fit", "measured_on": "eval", **temp_info}
    meta["temperature"]["at_bound_layers"] = at_bound
    meta["vocab"] = _vocab_meta(p)
    if p.bound is not None:
        p.bound.annotate(meta)
    examples: dict[str, np.ndarray] = {  # per analysed example, for analyze.explore
        "example": np.asarray(ds["example"].values, np.int64)[rows],
        "answer_logits": p.z[rows].astype(np.float32),
        "option_mass": mass.astype(np.float32),
    }
    return AnalysisResult(
        layers_df, by_group, marks, _reliability(conf, correct, bins), meta, examples
    )


def _option_mass(p: Pass) -> NDArray[np.float64]:
    """(n, L) share of the lens' probability on the answer options, of the analysed examples."""
    rec_z = np.asarray(p.recorded["lens_logits"].values, np.float64)
    rec_lse = np.asarray(p.recorded["lens_lse"].values, np.float64)
    return option_mass_one_source(p.z, p.lse, rec_z, rec_lse, p.mask)[p.rows]


def _layer_table(
    p: Pass,
    mass: NDArray[np.float64],
    lay: list[int],
    values: dict[str, Any],
    ci: dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]],
) -> pl.DataFrame:
    """The per-layer table: ``values`` (metrics, endpoints, temperature columns), the option
    mass and vocabulary entropy, the bootstrap intervals."""
    cols: dict[str, Any] = {"layer": lay, "n": [p.rows.size] * len(lay)}
    cols.update({k: values[k] for k in LAYER_COLUMNS if k in values})
    vent = p.vent
    if "lens_entropy" in p.recorded:  # recomputed where sampled, else recorded at extraction
        vent = np.where(np.isfinite(vent), vent, p.recorded["lens_entropy"].values)
    option_mass = mass.mean(axis=0) if p.bound is None else nanmean0(mass)  # fitted: the sample
    cols.update(option_mass=option_mass, vocab_entropy=nanmean0(vent[p.rows]))
    cols.update(ece_eval=values["ece_eval"], nll_eval=values["nll_eval"])
    for k in INTERVAL_METRICS:
        cols[f"{k}_lo"], cols[f"{k}_hi"] = ci[k]
    intervals = [f"{k}_{s}" for k in INTERVAL_METRICS for s in ("lo", "hi")]
    return pl.DataFrame(cols).select([*LAYER_COLUMNS, *intervals, "ece_eval", "nll_eval"])


def _with_lens(
    p: Pass,
    analysed: pl.DataFrame,
    lay: list[int],
    layers_df: pl.DataFrame,
    marks: dict[str, Any],
    params: dict[str, Any],
) -> pl.DataFrame:
    """The layer table with the lens column and the ΔECE-to-last columns; ``marks`` gets the
    lens record and its plateau-to-last contrast (the landmarks' selection half, redrawn)."""
    boot = params["bootstrap"]
    selection = selection_half(
        analysed["subject"].to_numpy(), analysed["example_id"].to_numpy(), boot["seed"]
    )
    contrasts = lens_contrasts(lay, p.terms, selection, marks, params["bins"], boot)
    record = p.bound.record() if p.bound is not None else params["lens"]
    return with_lens(layers_df, marks, record, contrasts)


def _reliability(
    conf: NDArray[np.float64], correct: NDArray[np.float64], bins: int
) -> dict[str, NDArray[Any]]:
    count, s_conf, s_corr = bin_sums(conf, correct, bins)
    reliability = {"count": count, "sum_conf": s_conf, "sum_correct": s_corr}
    reliability["conf_hist"] = bin_sums(conf, correct, CONF_HIST_BINS)[0]
    return reliability


def _vocab_meta(p: Pass) -> dict[str, Any]:
    """meta["vocab"]: how many examples got the full-vocabulary lens, and what each column is."""
    return {
        "n_examples": int(p.in_vocab[p.rows].sum()),
        "chunk_rows": VOCAB_CHUNK,
        "option_mass_lse": "recomputed where sampled, else lens_lse recorded at extraction",
        "option_mass": "sampled examples: recomputed answer logits and lse; the others: the "
        "answer logits and lse recorded together at extraction (never one of each); clipped "
        "at 1 against float32 rounding",
        "entropy": "recomputed where sampled, else lens_entropy recorded at extraction"
        if "lens_entropy" in p.recorded
        else "recomputed for the sampled examples (the store records no lens_entropy)",
    }
