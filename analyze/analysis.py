"""One store -> one :class:`AnalysisResult`: per-layer metrics, groups, temperature, landmarks.

``analyze_store`` reads ``resid`` once (``analyze.lens.vocab.lens_pass``); everything after that works
on (layers, examples, options) arrays. Splits: the examples are divided, per subject and seeded,
into a "fit" half (``temperature_split`` of each subject) and an "eval" half. Temperature scaling
is always fitted per layer on the fit half and measured on the eval half, whatever ``split`` says;
``split`` only chooses the examples every other metric is computed on (all, fit or eval).
Results are cached under ``cache_dir/<key>/``, key = sha256 of the store's content fingerprint and
every parameter, so a rerun with the same parameters does not read ``resid`` at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import xarray as xr

from analyze._pass import bootstrap_graph, read_once, terms_graph
from analyze._tables import group_metrics, nanmean0, select_examples, store_meta
from analyze.calibration import (
    FLOOR_SIMULATIONS,
    LANDMARK_EXTRA_DEFINITIONS,
    MCE_MIN_COUNT,
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
    IncompleteStoreError,
    full_vocab_arrays,
    lens_pass,
    open_store,
    option_mass_one_source,
    recorded_checks,
)
from analyze.lens.fitted import BoundLens, FittedLens, load_lens
from analyze.lens.fitted.compare import lens_contrasts, with_lens
from analyze.results import INTERVAL_METRICS, LAYER_COLUMNS, AnalysisResult, metric_definitions
from layercal import __version__

Split = Literal["all", "fit", "eval"]
GroupBy = Literal["subject", "category"]
# full-vocab lens sample: ~25 ms CPU per example over 31 SmolLM2 layers (2*V*d flops per row).
# A store that records lens_entropy needs the sample only to cross-check lens_lse and
# lens_entropy: CHECK_VOCAB_EXAMPLES. One written before that gets its vocab_entropy column from
# the sample itself: DEFAULT_VOCAB_EXAMPLES, under a third of one read of resid at full MMLU
# scale (docs/benchmarks.md).
DEFAULT_VOCAB_EXAMPLES = 32
CHECK_VOCAB_EXAMPLES = 8
VocabExamples = int | None | Literal["auto"]
CONF_HIST_BINS = 20
CACHE_VERSION = 6  # bump when the computation changes, so old cache entries are not reused
# 4: chance = mean 1/K_i, interval-based rise, peak chosen and phase tested on separate halves,
#    MCE over bins of >= MCE_MIN_COUNT by default, option mass from one computation
# 5: issue 17's endpoints (ece_floor, smece + interval, gap, auroc, Brier decomposition),
#    landmark intervals, the cross-fitted plateau-to-last contrast, ΔNLL/ΔBrier
# 6: entries keep the per-example answer logits and option mass (examples.npz: the explorer)
PASS_CHUNKS = {"example": 256, "layer": -1}  # one shard of a default store per task
TEMPERATURE_COLUMNS = ("temperature", "ece_temperature_scaled", "nll_temperature_scaled")


def analyze_store(
    ds_or_path: xr.Dataset | str | os.PathLike[str],
    *,
    bins: int = 10,
    mce_min_count: int = MCE_MIN_COUNT,
    n_boot: int = 1000,
    seed: int = 0,
    layers: Sequence[int] | None = None,
    split: Split = "all",
    group_by: Sequence[GroupBy] = ("subject", "category"),
    temperature_split: float = 0.5,
    vocab_examples: VocabExamples = "auto",
    storage_options: dict[str, Any] | None = None,
    allow_partial: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    group_intervals: bool = False,
    lens: str | os.PathLike[str] | FittedLens | None = None,
    transfer: bool = False,
) -> AnalysisResult:
    """Analyse one store (a path, an fsspec URL or a Dataset from ``open_store``).

    ``layers``: depths to report (None = all); the last depth is always added, being the
    reference of kl_to_last, flip_rate and the landmarks. ``vocab_examples``: how many of the
    analysed examples (seeded sample) get the full-vocabulary lse and entropy recomputed; None =
    all; "auto" = CHECK_VOCAB_EXAMPLES when the store records ``lens_entropy`` (the column then
    averages the recorded entropy of every example, the sample cross-checks it), else
    DEFAULT_VOCAB_EXAMPLES (the column averages the sample).
    ``temperature_split``: fraction of each subject in the fit half. ``mce_min_count``: MCE
    counts only bins holding at least this many examples (default MCE_MIN_COUNT = 10: with 1, a
    bin of one example sets MCE). ``cache_dir``: where results are cached (None: no cache).
    ``group_intervals``: also bootstrap every group's smECE (by_group's smece_lo/smece_hi; nan
    otherwise): a bandwidth search per resample, group and layer, about 50 us each on 2 cores,
    so off by default (57 subjects x 31 layers x 1,000 resamples is over a minute).
    ``lens``: None (the logit lens), ``"logit"`` (the same, named: a ``lens`` column and the
    contrasts of :mod:`analyze.lens.fitted.compare`), or a folder from ``layercal lens fit`` (or
    a :class:`~analyze.lens.fitted.FittedLens`) to read every number through, named the same
    way; ``transfer``: allow a lens fitted on another store of the same model.
    Raises StoreError for a store that cannot be read as asked (LensError: a lens).
    """
    t0 = time.perf_counter()
    ds, small, url = _open(ds_or_path, storage_options, allow_partial)
    if split not in ("all", "fit", "eval"):
        raise ValueError(f"split must be 'all', 'fit' or 'eval', got {split!r}")
    if not 0.0 < temperature_split < 1.0:
        raise ValueError(f"temperature_split must be in (0, 1), got {temperature_split!r}")
    bad = sorted(set(group_by) - {"subject", "category"})
    if bad:
        raise ValueError(f"group_by accepts 'subject' and 'category', got {bad}")
    for name, value in (("bins", bins), ("n_boot", n_boot), ("mce_min_count", mce_min_count)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    fitted = lens if lens is None or isinstance(lens, FittedLens) else named_lens(lens)
    recorded_entropy = "lens_entropy" in small and not isinstance(fitted, FittedLens)
    vocab_examples = resolve_vocab_examples(vocab_examples, recorded_entropy)
    positions = select_layers(ds, layers)
    params: dict[str, Any] = {
        "bins": int(bins),
        "mce_min_count": int(mce_min_count),
        "bootstrap": {"n_boot": int(n_boot), "seed": int(seed), "alpha": 0.05},
        "seed": int(seed),
        "layers": [int(ds["layer"].values[i]) for i in positions],
        "split": split,
        "group_by": list(group_by),
        "temperature_split": float(temperature_split),
        "vocab_examples": vocab_examples,
        "floor_simulations": FLOOR_SIMULATIONS,
        "group_intervals": bool(group_intervals),
        "cache_version": CACHE_VERSION,
    }
    bound = None
    if isinstance(fitted, FittedLens):  # refused here when the store is not the lens's
        bound = fitted.bind(ds.isel(layer=positions), transfer)
        params["lens"] = {k: v for k, v in bound.record().items() if k != "path"}
    elif fitted is not None:
        params["lens"] = {"name": "logit", "kind": "logit"}
    key = cache_key(small, params)
    entry = Path(cache_dir) / key if cache_dir is not None else None
    if entry is not None and (entry / "meta.json").is_file():
        res = AnalysisResult.load(entry)
        res.meta.update(store=url, cache_hit=True, cache_dir=str(entry))
        return res
    if len(positions) < ds.sizes["layer"]:
        ds, small = ds.isel(layer=positions), small.isel(layer=positions)
    res = _compute(ds, small, params, url, bound)
    res.meta.update(cache_key=key, cache_hit=False)
    res.meta["timing"]["total_s"] = time.perf_counter() - t0
    if entry is not None:
        _save_atomic(res, entry)
        res.meta["cache_dir"] = str(entry)
    return res


def resolve_vocab_examples(value: VocabExamples, recorded_entropy: bool) -> int | None:
    """The number of examples given the full-vocabulary lens (None = all) for ``value``."""
    if value == "auto":
        return CHECK_VOCAB_EXAMPLES if recorded_entropy else DEFAULT_VOCAB_EXAMPLES
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(
            f"vocab_examples must be 'auto', None (all) or an integer >= 0, got {value!r}"
        )
    return value


def named_lens(lens: str | os.PathLike[str]) -> FittedLens | str:
    """``"logit"``, or the lens folder at ``lens`` loaded."""
    return "logit" if os.fspath(lens) == "logit" else load_lens(lens)


def _open(
    ds_or_path: xr.Dataset | str | os.PathLike[str],
    storage_options: dict[str, Any] | None,
    allow_partial: bool,
) -> tuple[xr.Dataset, xr.Dataset, str]:
    """Two views of one store: chunked for the pass over resid, and with every example in one
    chunk for the small per-example arrays (the labels, masks and ids are stored as single
    chunks, which many example chunks would each decode again). Returns (pass, small, url)."""
    if not isinstance(ds_or_path, xr.Dataset):
        url = os.fspath(ds_or_path)
        views = [
            open_store(url, chunks=ch, storage_options=storage_options, allow_partial=allow_partial)
            for ch in (PASS_CHUNKS, {"example": -1, "layer": -1})
        ]
        return views[0], views[1], url
    ds, url = ds_or_path, str(ds_or_path.encoding.get("source", "<dataset>"))
    written = np.asarray(ds["written"].values, bool)
    if not written.all():
        if not allow_partial:
            raise IncompleteStoreError(
                f"the dataset is missing {int((~written).sum())} of {written.size} examples; "
                "finish the extraction, or pass allow_partial=True"
            )
        ds = ds.isel(example=np.flatnonzero(written))
    return ds.chunk(PASS_CHUNKS), ds.chunk({"example": -1}), url


def select_layers(ds: xr.Dataset, layers: Sequence[int] | None) -> list[int]:
    """Positions along ``ds.layer`` of the requested depths plus the last; checks the range."""
    have = [int(x) for x in ds["layer"].values]
    if layers is None:
        return list(range(len(have)))
    missing = sorted(set(int(x) for x in layers) - set(have))
    if missing:
        raise ValueError(f"layers {missing} are not in the store, which has depths 0..{have[-1]}")
    return sorted({have.index(int(x)) for x in layers} | {len(have) - 1})


def fingerprint(ds: xr.Dataset) -> str:
    """sha256 of what the store holds: identity, per-block activation digests, written examples."""
    h = hashlib.sha256(json.dumps(ds.attrs["layercal"]["identity"], sort_keys=True).encode())
    h.update("\n".join(str(x) for x in ds["block_sha256"].values).encode())
    h.update(np.asarray(ds["example"].values, np.int64).tobytes())  # which examples are kept
    h.update(np.asarray(ds["written"].values, bool).tobytes())
    return h.hexdigest()


def cache_key(ds: xr.Dataset, params: dict[str, Any]) -> str:
    """Cache key: sha256 of the store fingerprint, the parameters (JSON, sorted keys; they hold
    CACHE_VERSION) and layercal's version, so results of older code are recomputed."""
    text = json.dumps(
        {"store": fingerprint(ds), "params": params, "layercal": __version__},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _save_atomic(res: AnalysisResult, entry: Path) -> None:
    tmp = entry.with_name(f".tmp-{entry.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    res.save(tmp, examples=True)
    try:
        os.replace(tmp, entry)
    except OSError:  # another process stored the same entry meanwhile
        shutil.rmtree(tmp, ignore_errors=True)


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _lap(timing: dict[str, float], name: str, start: tuple[float, float]) -> tuple[float, float]:
    """Record wall and CPU seconds (all threads) since ``start`` as name_s, name_cpu_s."""
    now = _clock()
    timing[f"{name}_s"], timing[f"{name}_cpu_s"] = now[0] - start[0], now[1] - start[1]
    return now


def _compute(
    ds: xr.Dataset,
    small: xr.Dataset,
    params: dict[str, Any],
    url: str,
    bound: BoundLens | None = None,
) -> AnalysisResult:
    timing: dict[str, float] = {}
    t = _clock()
    frame, mask, is_fit, rows, in_vocab = select_examples(small, params)
    label = frame["label"].to_numpy()
    bins, min_count, boot = params["bins"], params["mce_min_count"], params["bootstrap"]
    lensed, scale = (ds, None) if bound is None else bound.lensed(ds)
    lazy = lens_pass(lensed, in_vocab, scale=scale)
    terms_lazy = terms_graph(lazy["answer_logits"].data, label, mask)
    extra = (terms_lazy, *bootstrap_graph(terms_lazy, rows, boot, bins))
    t = _lap(timing, "prepare", t)
    out, recorded, (terms, sums, w_store) = read_once(lazy, small, frame, mask, extra)
    z = out["answer_logits"].values  # (n, L, K)
    lse, vent = full_vocab_arrays(out)  # (n, L), nan where not sampled
    t = _lap(timing, "lens_pass", t)

    if bound is None:
        checks, warnings = recorded_checks(recorded, z, lse, vent)
    else:  # checked at the last depth only; the recorded lse and entropy are the logit lens's
        checks, warnings, recorded = bound.checks(recorded, z, lse, vent)
    rec_z = np.asarray(recorded["lens_logits"].values, np.float64)
    rec_lse = np.asarray(recorded["lens_lse"].values, np.float64)
    mass = option_mass_one_source(z, lse, rec_z, rec_lse, mask)[rows]
    lay = [int(x) for x in ds["layer"].values]
    # temperature scaling and the per-layer endpoints (numpy, GIL mostly released) run in
    # threads beside the rest; every other per-layer metric comes from the terms of the pass
    terms = terms[..., rows]  # (T, L, n)
    correct, conf = terms[0], terms[1]
    weights_t = np.ascontiguousarray(w_store[rows], np.float32)  # (n, n_boot) draw counts
    uniforms = floor_uniforms(rows.size, params["floor_simulations"], boot["seed"])
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="analysis")
    temp_future = pool.submit(temperature_columns, np.moveaxis(z, 1, 0), label, mask, is_fit, bins)
    analysed = frame[rows.tolist()]
    # the floor's draws summed per cell of the group-bys, so every table's floor comes from one
    # simulation (cells: the combinations of the group-by columns among the analysed examples)
    keys = (
        analysed.select(params["group_by"]).to_numpy().astype(str) if params["group_by"] else None
    )
    cells = (
        np.unique(keys, axis=0, return_inverse=True)[1].ravel()
        if keys is not None
        else np.zeros(rows.size, np.intp)
    )
    floor_sums = cell_floor_sums(conf, uniforms, cells, int(cells.max()) + 1, bins)
    floor = (*floor_sums, cells)
    ends_future = pool.submit(
        endpoint_rows,
        conf,
        correct,
        n_bins=bins,
        ece_floor=floor_of_cells(*floor_sums, np.arange(int(cells.max()) + 1), rows.size),
        weights=weights_t.T,
        weights_t=weights_t,
        alpha=boot["alpha"],
    )
    m = metrics_from_terms(terms, bins, min_count)
    by_group = group_metrics(
        analysed,
        conf,
        correct,
        terms[2],
        terms[3],
        lay,
        params["group_by"],
        bins,
        min_count,
        floor=floor,
        weights_t=weights_t if params["group_intervals"] else None,
        alpha=boot["alpha"],
    )
    ci = bootstrap_intervals(sums, rows.size, len(lay), bins, boot["alpha"], min_count)
    t = _lap(timing, "metrics_groups", t)
    # the peak is chosen on one half of the analysed examples and tested on the other
    selection = selection_half(
        analysed["subject"].to_numpy(), analysed["example_id"].to_numpy(), boot["seed"]
    )
    chance = chance_accuracy(mask[rows])
    scores = {"nll": terms[3], "brier": terms[2]}
    marks = depth_landmarks(
        lay,
        conf,
        correct,
        chance=chance,
        selection=selection,
        accuracy_lo=ci["accuracy"][0],
        n_bins=bins,
        n_boot=boot["n_boot"],
        seed=boot["seed"],
        alpha=boot["alpha"],
        scores=scores,
    )
    marks.update(
        landmark_extras(
            lay,
            conf,
            correct,
            terms[3],
            terms[2],
            selection,
            weights_t.T,
            chance=chance,
            chance_best_constant=best_constant_chance(label[rows], mask[rows]),
            accuracy_lo=ci["accuracy"][0],
            n_bins=bins,
            alpha=boot["alpha"],
        )
    )
    _phase_floors(marks, conf, uniforms, selection, lay, bins)
    marks["definitions"].update(LANDMARK_EXTRA_DEFINITIONS)
    marks["definitions"].update(metric_definitions(bins, min_count))
    temp, temp_info = temp_future.result()
    ends = ends_future.result()
    pool.shutdown()
    _lap(timing, "landmarks_temperature", t)

    cols: dict[str, Any] = {"layer": lay, "n": [rows.size] * len(lay)}
    cols.update({k: m[k] for k in LAYER_COLUMNS if k in m})
    if "lens_entropy" in recorded:  # recomputed where sampled, else recorded at extraction
        vent = np.where(np.isfinite(vent), vent, recorded["lens_entropy"].values)
    option_mass = mass.mean(axis=0) if bound is None else nanmean0(mass)  # fitted: the sample
    cols.update(option_mass=option_mass, vocab_entropy=nanmean0(vent[rows]))
    cols.update({k: temp[k] for k in (*TEMPERATURE_COLUMNS, "ece_eval", "nll_eval")})
    cols.update(ends)
    for k in INTERVAL_METRICS:
        cols[f"{k}_lo"], cols[f"{k}_hi"] = ci[k]
    intervals = [f"{k}_{s}" for k in INTERVAL_METRICS for s in ("lo", "hi")]
    layers_df = pl.DataFrame(cols).select([*LAYER_COLUMNS, *intervals, "ece_eval", "nll_eval"])
    if "lens" in params:  # a named lens: the lens column and the fixed-depth contrasts
        contrasts = lens_contrasts(lay, terms, selection, marks, bins, boot)
        layers_df = with_lens(
            layers_df, marks, bound.record() if bound else params["lens"], contrasts
        )
    count, s_conf, s_corr = bin_sums(conf, correct, bins)
    reliability = {"count": count, "sum_conf": s_conf, "sum_correct": s_corr}
    reliability["conf_hist"] = bin_sums(conf, correct, CONF_HIST_BINS)[0]
    meta = store_meta(ds, url, params, rows.size, lay)
    meta.update(checks=checks, warnings=warnings + temp_info.pop("warnings"), timing=timing)
    at_bound = [lay[i] for i in temp_info.pop("at_bound", [])]
    meta["temperature"] = {
        "fit_on": "fit",
        "measured_on": "eval",
        **temp_info,
        "at_bound_layers": at_bound,
    }
    meta["vocab"] = {
        "n_examples": int(in_vocab[rows].sum()),
        "chunk_rows": VOCAB_CHUNK,
        "option_mass_lse": "recomputed where sampled, else lens_lse recorded at extraction",
        "option_mass": "sampled examples: recomputed answer logits and lse; the others: the "
        "answer logits and lse recorded together at extraction (never one of each); clipped "
        "at 1 against float32 rounding",
        "entropy": "recomputed where sampled, else lens_entropy recorded at extraction"
        if "lens_entropy" in recorded
        else "recomputed for the sampled examples (the store records no lens_entropy)",
    }
    if bound is not None:
        bound.annotate(meta)
    examples: dict[str, np.ndarray] = {  # per analysed example, for analyze.explore
        "example": np.asarray(ds["example"].values, np.int64)[rows],
        "answer_logits": z[rows].astype(np.float32),
        "option_mass": mass.astype(np.float32),
    }
    return AnalysisResult(layers_df, by_group, marks, reliability, meta, examples)


def _phase_floors(
    marks: dict[str, Any],
    conf: np.ndarray,
    uniforms: np.ndarray,
    selection: np.ndarray,
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
