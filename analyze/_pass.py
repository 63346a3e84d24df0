"""The one pass over ``resid`` of ``analyze_store``, as one dask computation.

``read_once`` computes the lens pass (:func:`analyze.lens.lens_pass`: the answer logits of every
example, the full-vocabulary lens of a sample), the per-example terms of every per-layer metric
(``terms_graph``) and the bootstrap sums (``bootstrap_graph``) in a single graph, chunk by chunk
as ``resid`` is read, with BLAS held to one thread per dask thread while it runs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dask
import dask.array as da
import dask.threaded
import numpy as np
import polars as pl
import xarray as xr
from dask.delayed import Delayed
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from analyze.calibration import TERMS, bootstrap_sums, draw_weights, per_example_terms
from layercal.format import StoreError


def read_once(
    lazy: xr.Dataset,
    small: xr.Dataset,
    frame: pl.DataFrame,
    mask: NDArray[np.bool_],
    extra: tuple[da.Array, Delayed, Delayed],
) -> tuple[xr.Dataset, xr.Dataset, tuple[NDArray[np.float64], NDArray[np.float64], NDArray[Any]]]:
    """The one read of resid, with the recorded lens values, the per-example terms and the
    bootstrap sums, as one dask computation (of the arrays: computing the xarray Datasets
    themselves costs ~0.4 s more).

    ``lazy``: the ``lens_pass`` of the store; ``extra``: the per-example terms, the bootstrap
    sums built on its answer logits (the same graph, so resid is read once) and the draw counts
    (n_store, n_boot) they used."""
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
    with two BLAS threads per dask thread on 2 cores). Other schedulers (processes,
    dask.distributed) run the tasks elsewhere: nothing is changed for them."""
    scheduler = dask.base.get_scheduler()
    if scheduler is not None and scheduler is not dask.threaded.get:
        yield
        return
    with one_blas_thread():
        yield


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS limited to one thread in this process while the block runs: for work that runs in
    as many Python threads as there are cores (the pass, and the steps after it, which run
    temperature scaling and the endpoints in threads beside the main one; with OpenBLAS's own
    threads on top they spend ~0.4 CPU s more at full MMLU scale, for the same results).
    Process-wide, so counted: overlapping analyses in threads restore the original limits when
    the last one ends."""
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


def terms_graph(answers: da.Array, label: NDArray[np.int64], mask: NDArray[np.bool_]) -> da.Array:
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
    z = np.where(np.isfinite(z), z, 0.0)  # a damaged chunk is reported by read_once, not here
    return per_example_terms(np.moveaxis(z, 1, 0), label.astype(np.intp), mask)


def bootstrap_graph(
    terms: da.Array, rows: NDArray[np.intp], boot: dict[str, Any], bins: int
) -> tuple[Delayed, Delayed]:
    """Lazy ``bootstrap_sums`` of the analysed rows, chunk by chunk of ``terms`` (T, L, n), so
    the bootstrap runs while resid is being read: (1, n_boot, C) once computed; and the draw
    counts, (n, n_boot) with 0 for the examples outside ``rows`` (they add nothing to any sum),
    drawn in a task of the same graph, beside the first reads (the smECE and landmark
    bootstraps reuse them after the pass)."""
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
