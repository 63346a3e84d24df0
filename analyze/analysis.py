"""One store -> one :class:`AnalysisResult`: per-layer metrics, groups, temperature, landmarks.

``analyze_store`` reads ``resid`` once (``analyze.vocab.lens_pass``); everything after that works
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
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import dask
import dask.array as da
import dask.threaded
import numpy as np
import polars as pl
import xarray as xr
from dask.delayed import Delayed
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from analyze import metrics as M
from analyze._binning import bin_sums
from analyze._bootstrap import bootstrap_intervals, bootstrap_sums, draw_weights
from analyze._probs import TERMS, per_example_terms
from analyze._tables import (
    group_metrics,
    nanmean0,
    select_examples,
    store_meta,
    temperature_columns,
)
from analyze.landmarks import depth_landmarks
from analyze.results import INTERVAL_METRICS, LAYER_COLUMNS, AnalysisResult
from analyze.store import IncompleteStoreError, open_store
from analyze.vocab import (
    VOCAB_CHUNK,
    full_vocab_arrays,
    lens_pass,
    option_mass,
    recorded_checks,
)
from layercal import __version__
from layercal.format import StoreError

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
CACHE_VERSION = 3  # bump when the computation changes, so old cache entries are not reused
PASS_CHUNKS = {"example": 256, "layer": -1}  # one shard of a default store per task
TEMPERATURE_COLUMNS = ("temperature", "ece_temperature_scaled", "nll_temperature_scaled")


def analyze_store(
    ds_or_path: xr.Dataset | str | os.PathLike[str],
    *,
    bins: int = 10,
    mce_min_count: int = 1,
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
) -> AnalysisResult:
    """Analyse one store (a path, an fsspec URL or a Dataset from ``open_store``).

    ``layers``: depths to report (None = all); the last depth is always added, being the
    reference of kl_to_last, flip_rate and the landmarks. ``vocab_examples``: how many of the
    analysed examples (seeded sample) get the full-vocabulary lse and entropy recomputed; None =
    all; "auto" = CHECK_VOCAB_EXAMPLES when the store records ``lens_entropy`` (the column then
    averages the recorded entropy of every example, the sample cross-checks it), else
    DEFAULT_VOCAB_EXAMPLES (the column averages the sample).
    ``temperature_split``: fraction of each subject in the fit half. ``cache_dir``: where results
    are cached (None: no cache). Raises StoreError for a store that cannot be read as asked.
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
    vocab_examples = resolve_vocab_examples(vocab_examples, "lens_entropy" in small)
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
        "cache_version": CACHE_VERSION,
    }
    key = cache_key(small, params)
    entry = Path(cache_dir) / key if cache_dir is not None else None
    if entry is not None and (entry / "meta.json").is_file():
        res = AnalysisResult.load(entry)
        res.meta.update(store=url, cache_hit=True, cache_dir=str(entry))
        return res
    if len(positions) < ds.sizes["layer"]:
        ds, small = ds.isel(layer=positions), small.isel(layer=positions)
    res = _compute(ds, small, params, url)
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
    res.save(tmp)
    try:
        os.replace(tmp, entry)
    except OSError:  # another process stored the same entry meanwhile
        shutil.rmtree(tmp, ignore_errors=True)


def _read(
    lazy: xr.Dataset,
    small: xr.Dataset,
    frame: pl.DataFrame,
    mask: NDArray[np.bool_],
    extra: tuple[da.Array, Delayed, Delayed],
) -> tuple[xr.Dataset, xr.Dataset, tuple[NDArray[np.float64], NDArray[np.float64], NDArray[Any]]]:
    """The one read of resid, with the recorded lens values, the per-example terms and the
    bootstrap sums, as one dask computation (of the arrays: computing the xarray Datasets
    themselves costs ~0.4 s more).

    ``lazy``: the ``lens_pass`` of the store; ``extra``: the per-example terms, bootstrap sums
    and draw counts built on its answer logits (the same graph, so resid is read once)."""
    wanted = ["lens_logits", "lens_lse", "model_logits", "choice_mask"]
    recorded = small[wanted + (["lens_entropy"] if "lens_entropy" in small else [])]
    names = [(d, k) for d in (lazy, recorded) for k in d.data_vars]
    with _one_blas_thread_per_dask_thread():
        *values, terms, sums, w_t = dask.compute(*(d[k].data for d, k in names), *extra)
    got = {(id(d), k): v for (d, k), v in zip(names, values)}
    out, recorded = (d.copy(data={k: got[id(d), k] for k in d.data_vars}) for d in (lazy, recorded))
    z = out["answer_logits"].values
    finite = np.where(mask[:, None, :], np.isfinite(z), True).all(axis=(1, 2))
    if not finite.all():
        first = frame["example_id"][int(np.flatnonzero(~finite)[0])]
        raise StoreError(
            f"resid of {int((~finite).sum())} examples marked written (first: {first}) holds "
            "nan or inf: the store is damaged. Run `layercal store verify` on it, or re-extract."
        )
    return out, recorded, (terms, sums[0], w_t)


_BLAS_LOCK = threading.Lock()
_BLAS_STATE: dict[str, Any] = {"users": 0, "limiter": None}


@contextmanager
def _one_blas_thread_per_dask_thread() -> Iterator[None]:
    """BLAS limited to one thread while dask's local threads run the pass: they already keep
    every core busy, and OpenBLAS threads on top only contend (a bootstrap chunk takes 3x longer
    with two BLAS threads per dask thread on 2 cores). Process-wide, so counted: overlapping
    analyses in threads restore the original limits when the last one ends. Other schedulers
    (processes, dask.distributed) run the tasks elsewhere: nothing is changed for them."""
    scheduler = dask.base.get_scheduler()
    if scheduler is not None and scheduler is not dask.threaded.get:
        yield
        return
    with _BLAS_LOCK:
        if _BLAS_STATE["users"] == 0:
            _BLAS_STATE["limiter"] = threadpool_limits(limits=1, user_api="blas")
        _BLAS_STATE["users"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_STATE["users"] -= 1
            if _BLAS_STATE["users"] == 0:
                _BLAS_STATE["limiter"].restore_original_limits()
                _BLAS_STATE["limiter"] = None


def _terms_graph(answers: da.Array, label: NDArray[np.int64], mask: NDArray[np.bool_]) -> da.Array:
    """Lazy ``per_example_terms`` of every example, (len(TERMS), L, n), chunk by chunk of
    ``answers`` (n, L, K): computed as each chunk of resid is read."""
    answers = answers.rechunk({1: -1, 2: -1})  # the last layer is every example's reference
    ch = answers.chunks[0]
    return da.blockwise(
        _chunk_terms,
        "tle",
        answers,
        "elk",
        da.from_array(label, chunks=(ch,)),
        "e",
        da.from_array(mask, chunks=(ch, -1)),
        "ek",
        new_axes={"t": len(TERMS)},
        concatenate=True,
        dtype=np.float64,
        meta=np.empty((0, 0, 0), np.float64),
    )


def _chunk_terms(
    z: NDArray[np.float64], label: NDArray[np.int64], mask: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """(n_c, L, K) answer logits of one chunk -> (len(TERMS), L, n_c)."""
    z = np.where(np.isfinite(z), z, 0.0)  # a damaged chunk is reported by _read, not here
    return per_example_terms(np.moveaxis(z, 1, 0), label.astype(np.intp), mask)


def _bootstrap_graph(
    terms: da.Array, rows: NDArray[np.intp], boot: dict[str, Any], bins: int
) -> tuple[Delayed, Delayed]:
    """Lazy ``bootstrap_sums`` of the analysed rows, chunk by chunk of ``terms`` (T, L, n), so
    the bootstrap runs while resid is being read: (1, n_boot, C) once computed. Also returns the
    lazy draw counts, (n, n_boot) with 0 for the examples outside ``rows`` (they add nothing to
    any sum); they are drawn in a task of the same graph, beside the first reads."""
    n_boot, n_store = boot["n_boot"], terms.shape[2]
    w_t = dask.delayed(_store_weights, pure=True)(n_store, rows, n_boot, boot["seed"])
    w_arr = da.from_delayed(w_t, shape=(n_store, n_boot), dtype=np.uint8)
    parts = da.blockwise(
        _chunk_bootstrap_sums,
        "ebc",
        terms,
        "tle",
        w_arr.rechunk((terms.chunks[2], -1)),
        "eb",
        new_axes={"c": terms.shape[1] * (4 + 2 * bins)},
        adjust_chunks={"e": 1},
        concatenate=True,
        dtype=np.float64,
        meta=np.empty((0, 0, 0), np.float64),
        bins=bins,
    )
    # summed pairwise, as the chunks finish: dask's own sum would concatenate up to 32 partials
    # of 6 MB (1,000 resamples x 744 columns for SmolLM2) before adding them
    level = parts.to_delayed(optimize_graph=False).ravel().tolist()
    while len(level) > 1:
        pairs = [level[i : i + 2] for i in range(0, len(level), 2)]
        level = [dask.delayed(_add)(*p) if len(p) == 2 else p[0] for p in pairs]
    return level[0], w_t


def _add(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """a + b in a new array: never in place, since a distributed scheduler shares the partial
    sums (their keys are deterministic) between identical analyses running at once."""
    return a + b


def _store_weights(n_store: int, rows: NDArray[np.intp], n_boot: int, seed: int) -> NDArray[Any]:
    """``draw_weights`` of the analysed rows spread over the store's examples, (n_store, n_boot)."""
    weights = draw_weights(rows.size, n_boot, seed)
    w_t = np.zeros((n_store, n_boot), weights.dtype)
    w_t[rows] = weights.T
    return w_t


def _chunk_bootstrap_sums(
    terms: NDArray[np.float64], w_t: NDArray[Any], bins: int
) -> NDArray[np.float64]:
    """(T, L, n_c) per-example terms of one chunk -> (1, n_boot, C) bootstrap sums."""
    return bootstrap_sums(w_t.T, terms, bins)[None]


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _lap(timing: dict[str, float], name: str, start: tuple[float, float]) -> tuple[float, float]:
    """Record wall and CPU seconds (all threads) since ``start`` as name_s, name_cpu_s."""
    now = _clock()
    timing[f"{name}_s"], timing[f"{name}_cpu_s"] = now[0] - start[0], now[1] - start[1]
    return now


def _compute(ds: xr.Dataset, small: xr.Dataset, params: dict[str, Any], url: str) -> AnalysisResult:
    timing: dict[str, float] = {}
    t = _clock()
    frame, mask, is_fit, rows, in_vocab = select_examples(small, params)
    label = frame["label"].to_numpy()
    bins, min_count, boot = params["bins"], params["mce_min_count"], params["bootstrap"]
    lazy = lens_pass(ds, in_vocab)
    terms_lazy = _terms_graph(lazy["answer_logits"].data, label, mask)
    extra = (terms_lazy, *_bootstrap_graph(terms_lazy, rows, boot, bins))
    t = _lap(timing, "prepare", t)
    out, recorded, (terms, sums, w_t) = _read(lazy, small, frame, mask, extra)
    z = out["answer_logits"].values  # (n, L, K)
    lse, vent = full_vocab_arrays(out)  # (n, L), nan where not sampled
    t = _lap(timing, "lens_pass", t)

    checks, warnings = recorded_checks(recorded, z, lse, vent)
    rec_lse = np.asarray(recorded["lens_lse"].values, np.float64)
    mass = option_mass(z, np.where(np.isfinite(lse), lse, rec_lse), mask)[rows]
    lay = [int(x) for x in ds["layer"].values]
    # temperature scaling (numpy, GIL mostly released) runs in a thread beside the rest; every
    # other per-layer metric comes from the terms computed in the pass
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analysis")
    temp_future = pool.submit(temperature_columns, np.moveaxis(z, 1, 0), label, mask, is_fit, bins)
    terms = terms[..., rows]  # (T, L, n)
    m = M.metrics_from_terms(terms, bins, min_count)
    correct, conf = terms[0], terms[1]
    by_group = group_metrics(
        frame[rows.tolist()],
        conf,
        correct,
        terms[2],
        terms[3],
        lay,
        params["group_by"],
        bins,
        min_count,
    )
    ci = bootstrap_intervals(sums, rows.size, len(lay), bins, boot["alpha"], min_count)
    t = _lap(timing, "metrics_groups", t)
    marks = depth_landmarks(
        lay,
        m["accuracy"],
        m["ece"],
        conf,
        correct,
        float(frame["n_choices"].to_numpy()[rows].mean()),
        n_bins=bins,
        n_boot=boot["n_boot"],
        seed=boot["seed"],
        alpha=boot["alpha"],
        weights=w_t[rows].T,
    )
    temp, temp_info = temp_future.result()
    pool.shutdown()
    _lap(timing, "landmarks_temperature", t)

    cols: dict[str, Any] = {"layer": lay, "n": [rows.size] * len(lay)}
    cols.update({k: m[k] for k in LAYER_COLUMNS if k in m})
    if "lens_entropy" in recorded:  # recomputed where sampled, else recorded at extraction
        vent = np.where(np.isfinite(vent), vent, recorded["lens_entropy"].values)
    cols.update(option_mass=mass.mean(axis=0), vocab_entropy=nanmean0(vent[rows]))
    cols.update({k: temp[k] for k in (*TEMPERATURE_COLUMNS, "ece_eval", "nll_eval")})
    for k in INTERVAL_METRICS:
        cols[f"{k}_lo"], cols[f"{k}_hi"] = ci[k]
    intervals = [f"{k}_{s}" for k in INTERVAL_METRICS for s in ("lo", "hi")]
    layers_df = pl.DataFrame(cols).select([*LAYER_COLUMNS, *intervals, "ece_eval", "nll_eval"])
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
        "entropy": "recomputed where sampled, else lens_entropy recorded at extraction"
        if "lens_entropy" in recorded
        else "recomputed for the sampled examples (the store records no lens_entropy)",
    }
    return AnalysisResult(layers_df, by_group, marks, reliability, meta)
