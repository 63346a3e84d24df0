"""``layercal lens fit``: one translator per depth and fold, from the store alone.

The store is read one depth at a time (the residuals of every example at that depth, then the
next), so memory stays near a few (n, d) arrays plus the translator being fitted, whatever the
depth; the translators are written to the artifact as they are fitted. Per depth and fold
(:mod:`.folds`): ``temperature`` (:mod:`.temperature`), ``shortcut`` (:mod:`.shortcut`) or
``tuned`` (:mod:`.tuned`), then the held-out diagnostics (:mod:`.diagnostics`). The last depth
is the identity in every fold. Labels are never read.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from analyze.calibration.splits import as_str
from analyze.lens.answer import AnswerLens
from analyze.lens.fitted import shortcut, temperature, tuned
from analyze.lens.fitted.apply import FittedLens, load_lens
from analyze.lens.fitted.artifact import (
    AFFINE_KINDS,
    KINDS,
    BlockWriter,
    LensError,
    file_sha256,
    save_folder,
)
from analyze.lens.fitted.diagnostics import DepthScores
from analyze.lens.fitted.folds import cross_folds
from analyze.lens.fitted.record import lens_record
from analyze.lens.fitted.tokens import (
    DEFAULT_TOP_K,
    TokenSets,
    readouts,
    set_log_probs,
    token_sets,
)
from analyze.lens.store import open_store

LOO_STREAM = 0x100  # seeds of the shortcut's leave-one-out rows and the tuned validation rows


def fit_lens(
    store: str | os.PathLike[str] | xr.Dataset,
    kind: str,
    out: str | os.PathLike[str],
    *,
    folds: int = 5,
    seed: int = 0,
    top_k: int = DEFAULT_TOP_K,
    max_iter: int = tuned.DEFAULT_MAX_ITER,
    penalty_grid: tuple[float, ...] = shortcut.PENALTY_GRID,
    storage_options: dict[str, Any] | None = None,
    allow_partial: bool = False,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> FittedLens:
    """Fit a ``kind`` lens on ``store`` and write its folder at ``out``; returns it loaded.

    ``folds``: cross-fitting folds; ``seed``: of the folds and the inner splits; ``top_k``: the
    token set's tokens beside the answer options; ``max_iter``: tuned, L-BFGS iterations per
    depth and fold at most; ``penalty_grid``: shortcut, the candidate penalties in multiples of
    the mean eigenvalue of the training Gram matrix (inf, the logit lens, is always a candidate:
    ``()`` leaves only it). ``progress``: called with a line per depth.
    """
    t0 = time.perf_counter()
    if kind not in KINDS:
        raise LensError(f"unknown lens kind {kind!r}; choose one of {', '.join(KINDS)}")
    dest = Path(out)
    if dest.exists() and not overwrite:
        raise LensError(f"{dest} already exists; pass --overwrite to replace it")
    ds = (
        store
        if isinstance(store, xr.Dataset)
        else open_store(store, storage_options=storage_options, allow_partial=allow_partial)
    )
    n, n_depth, d = (int(ds.sizes[k]) for k in ("example", "layer", "hidden"))
    if n_depth != int(ds.attrs["layercal"]["layout"]["n_depth"]):
        raise LensError("a lens is fitted on every depth of a store; open it without --layers")
    fold = cross_folds(ds["subject"].values, ds["example_id"].values, folds, seed)
    say = progress or (lambda _msg: None)
    h_last = np.asarray(ds["resid"].isel(layer=-1).values, np.float32)
    sets = token_sets(ds, h_last, fold, top_k)
    reads = readouts(ds, sets.ids)
    final_z = [r.logits(h_last) for r in reads]  # (n, S) per fold
    say(f"token sets: {sets.ids.shape[1]} tokens per fold ({time.perf_counter() - t0:.1f} s)")
    tmp = dest.with_name(f".tmp-{dest.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = _Arrays(tmp, kind, folds, n_depth, d)
    rows: list[dict[str, Any]] = []
    workers = min(folds, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    # one pool for every depth (fresh threads per depth would each take a glibc arena and
    # keep what they free), one BLAS thread per fold being fitted (see _fit_depth)
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        for layer in range(n_depth):
            t1 = time.perf_counter()
            last = layer == n_depth - 1
            x = h_last if last else np.asarray(ds["resid"].isel(layer=layer).values, np.float32)
            stats = None
            if kind == "shortcut" and not last:
                stats = shortcut.fold_stats(x, h_last, fold, folds)
            ctx = _Depth(kind, layer, last, x, h_last, fold, reads, final_z, seed, max_iter,
                         penalty_grid, stats)  # fmt: skip
            rows.append(_fit_depth(ctx, sets, state, pool).row(layer))
            del ctx, stats, x
            release_memory()
            say(
                f"depth {layer}: KL to final {rows[-1]['kl_to_final']:.3f} (logit lens "
                f"{rows[-1]['kl_to_final_logit']:.3f}), top-1 agreement "
                f"{rows[-1]['top1_agreement']:.3f} ({rows[-1]['top1_agreement_logit']:.3f}) "
                f"in {time.perf_counter() - t1:.1f} s"
            )
    _write_folder(tmp, dest, ds, kind, folds, seed, fold, sets, state, rows, max_iter,
                  penalty_grid, t0, overwrite)  # fmt: skip
    return load_lens(dest)


def _write_folder(
    tmp: Path,
    dest: Path,
    ds: xr.Dataset,
    kind: str,
    folds: int,
    seed: int,
    fold: Any,
    sets: Any,
    state: Any,
    rows: list[dict[str, Any]],
    max_iter: int,
    penalty_grid: tuple[float, ...],
    t0: float,
    overwrite: bool,
) -> None:
    """The lens folder: the arrays, lens.json (with every array's shape and sha256), written
    in ``tmp`` and moved to ``dest``."""
    np.save(tmp / "example_id.npy", as_str(ds["example_id"].values))
    np.save(tmp / "fold.npy", fold)
    np.save(tmp / "tokens.npy", sets.ids)
    state.finish()
    info = lens_record(ds, kind, folds, seed, fold, sets, state.records, rows, max_iter)
    if kind == "shortcut":
        info["penalties"]["grid"] = [*penalty_grid, "inf"]
    info["fit_seconds"] = time.perf_counter() - t0
    info["arrays"] = {
        p.name: {
            "shape": list(np.load(p, mmap_mode="r", allow_pickle=False).shape),
            "sha256": file_sha256(p),
        }
        for p in sorted(tmp.glob("*.npy"))
    }
    (tmp / "lens.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    save_folder(tmp, dest, overwrite)


class _Arrays:
    """The translator arrays being written, and the per-fold, per-depth fit records."""

    def __init__(self, folder: Path, kind: str, k: int, n_depth: int, d: int) -> None:
        self.kind, self.folder = kind, folder
        self.records: list[list[dict[str, Any]]] = [[] for _ in range(k)]
        if kind in AFFINE_KINDS:
            self.weight = BlockWriter(folder / "weight.npy", (k, n_depth, d, d))
            self.bias = BlockWriter(folder / "bias.npy", (k, n_depth, d))
        self.temperature = np.ones((k, n_depth))

    def affine(self, f: int, layer: int, w: NDArray[Any], b: NDArray[Any]) -> None:
        self.weight.write((f, layer), w)
        self.bias.write((f, layer), b)

    def finish(self) -> None:
        if self.kind == "temperature":
            np.save(self.folder / "temperature.npy", self.temperature)


def release_memory() -> None:
    """Hand freed heap memory back to the system (glibc ``malloc_trim``; elsewhere nothing).

    Each depth allocates and frees the same few large arrays in two threads; glibc keeps what
    they free in per-thread arenas, which counts in the fit's resident memory."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@dataclass(frozen=True)
class _Depth:
    """What every fold's fit at one depth reads."""

    kind: str
    layer: int
    last: bool
    x: NDArray[np.float32]  # (n, d) the depth's residuals
    h_last: NDArray[np.float32]  # (n, d) the last depth's
    fold: NDArray[np.int64]
    reads: list[AnswerLens]  # per fold: the readout on its token set
    final_z: list[NDArray[np.float64]]  # per fold: (n, S) final logits on its set
    seed: int
    max_iter: int
    grid: tuple[float, ...]
    stats: shortcut.FoldStats | None


def _fit_depth(
    ctx: _Depth, sets: TokenSets, state: _Arrays, pool: ThreadPoolExecutor
) -> DepthScores:
    """Fit every fold's translator at the depth of ``ctx``, write it, score its held-out
    examples.

    The folds are fitted in parallel threads (``pool``) with one BLAS thread each: on a busy
    machine BLAS's own threads contend (an eigendecomposition of SmolLM2's size took 15x longer
    with two), and the folds are independent; each fold's numbers do not depend on the
    threads."""
    done = list(pool.map(lambda f: _fit_fold(ctx, f), range(len(ctx.reads))))
    fold, layer, final_z = ctx.fold, ctx.layer, ctx.final_z
    scores = DepthScores()
    for f, (rec, lens_z, logit_z, arrays) in enumerate(done):
        if arrays is not None:
            state.affine(f, layer, *arrays)
        if "temperature" in rec:
            state.temperature[f, layer] = rec["temperature"]
        state.records[f].append(rec)
        held = fold == f
        scores.add(
            lens_z,
            logit_z,
            final_z[f][held],
            sets.ids[f],
            sets.final_top1[held],
            sets.final_lse[held],
        )
    return scores


def _fit_fold(ctx: _Depth, f: int) -> tuple[dict[str, Any], Any, Any, Any]:
    """(record, lens logits of the held-out examples, their logit-lens logits, (B, b) or None)
    of fold ``f`` at the depth of ``ctx``."""
    x, fold, read = ctx.x, ctx.fold, ctx.reads[f]
    train, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
    logit_z = read.logits(x[held])
    rec: dict[str, Any] = {"layer": ctx.layer, "identity": ctx.last}
    rng = np.random.default_rng([ctx.seed, LOO_STREAM, f])
    if ctx.last:  # the identity: zeros already written, temperature 1
        return rec, logit_z, logit_z, None
    if ctx.kind == "temperature":
        beta = temperature.fit_beta(set_log_probs(ctx.final_z[f][train]), read.logits(x[train]))
        rec["temperature"] = 1.0 / beta
        return rec, beta * logit_z, logit_z, None
    if ctx.kind == "shortcut":
        assert ctx.stats is not None
        loo = np.sort(rng.choice(train, min(train.size, shortcut.LOO_ROWS), replace=False))
        r_loo = ctx.h_last[loo] - x[loo]
        fit = shortcut.fit_fold(ctx.stats, f, x[loo], r_loo, ctx.grid, x[train])
        rec.update(penalty=fit.relative, loo_mse=float(fit.loo.min()))
        rec["loo_mse_identity"] = float(fit.loo[-1])
        w, b = fit.weight, fit.bias
    else:
        log_p = set_log_probs(ctx.final_z[f][train])
        seed = int(rng.integers(2**31))
        fit_t = tuned.fit_tuned(x[train], log_p, read, seed=seed, max_iter=ctx.max_iter)
        rec.update(iterations=fit_t.iterations, best_iteration=fit_t.best_iteration)
        for key in ("train_kl", "validation_kl"):  # None: too few examples to fit (identity)
            value = getattr(fit_t, key)
            rec[key] = value if np.isfinite(value) else None
        w, b = fit_t.weight, fit_t.bias
    return rec, read.logits(x[held] + x[held] @ w + b), logit_z, (w, b)
