"""``layercal lens fit``: one translator per depth and fold, from the store alone.

The store is read one depth at a time (the residuals of every example at that depth, then the
next), so memory stays near a few (n, d) arrays plus the translator being fitted, whatever the
depth; the translators are written to the artifact as they are fitted. Per depth and fold
(:mod:`.folds`): ``temperature`` (:mod:`.temperature`), ``shortcut`` (:mod:`.shortcut`) or
``tuned`` (:mod:`.tuned`), then the held-out diagnostics (:mod:`.diagnostics`). The last depth
is the identity in every fold. Labels are never read.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from analyze.calibration.splits import as_str
from analyze.lens.fitted import shortcut, temperature, tuned
from analyze.lens.fitted.artifact import (
    AFFINE_KINDS,
    KINDS,
    LENS_FORMAT,
    LENS_VERSION,
    TRANSFER_RULE,
    BlockWriter,
    FittedLens,
    LensError,
    file_sha256,
    load_lens,
    save_folder,
    w_u_fingerprint,
)
from analyze.lens.fitted.diagnostics import DepthScores
from analyze.lens.fitted.folds import FOLD_RULE, cross_folds
from analyze.lens.fitted.tokens import (
    DEFAULT_TOP_K,
    TOKEN_SET_RULE,
    readout,
    set_log_probs,
    token_sets,
)
from analyze.lens.store import open_store, store_hash

LOO_STREAM = 0x100  # seeds of the shortcut's leave-one-out rows and the tuned validation rows
TRANSLATOR = {
    "temperature": "logits / T_l (the residual unchanged): softmax(z_l / T_l)",
    "shortcut": "h -> h + h B_l + b_l, then the stored final norm and unembedding",
    "tuned": "h -> h + h B_l + b_l, then the stored final norm and unembedding",
}


def fit_lens(
    store: str | os.PathLike[str] | xr.Dataset,
    kind: str,
    out: str | os.PathLike[str],
    *,
    folds: int = 5,
    seed: int = 0,
    top_k: int = DEFAULT_TOP_K,
    max_iter: int = tuned.DEFAULT_MAX_ITER,
    storage_options: dict[str, Any] | None = None,
    allow_partial: bool = False,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> FittedLens:
    """Fit a ``kind`` lens on ``store`` and write its folder at ``out``; returns it loaded."""
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
    reads = [readout(ds, sets.ids[f]) for f in range(folds)]
    final_z = [r.logits(h_last) for r in reads]  # (n, S) per fold
    say(f"token sets: {sets.ids.shape[1]} tokens per fold ({time.perf_counter() - t0:.1f} s)")
    tmp = dest.with_name(f".tmp-{dest.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = _Arrays(tmp, kind, folds, n_depth, d)
    rows: list[dict[str, Any]] = []
    for layer in range(n_depth):
        t1 = time.perf_counter()
        x = h_last if layer == n_depth - 1 else np.asarray(ds["resid"].isel(layer=layer).values)
        scores = _fit_depth(
            kind,
            layer,
            n_depth,
            np.asarray(x, np.float32),
            h_last,
            fold,
            reads,
            final_z,
            sets,
            state,
            seed,
            max_iter,
        )
        rows.append(scores.row(layer))
        say(
            f"depth {layer}: KL to final {rows[-1]['kl_to_final']:.3f} (logit lens "
            f"{rows[-1]['kl_to_final_logit']:.3f}), top-1 agreement "
            f"{rows[-1]['top1_agreement']:.3f} ({rows[-1]['top1_agreement_logit']:.3f}) "
            f"in {time.perf_counter() - t1:.1f} s"
        )
    np.save(tmp / "example_id.npy", as_str(ds["example_id"].values))
    np.save(tmp / "fold.npy", fold)
    np.save(tmp / "tokens.npy", sets.ids)
    state.finish()
    info = _info(ds, kind, folds, seed, fold, sets, state, rows, max_iter)
    info["fit_seconds"] = time.perf_counter() - t0
    info["arrays"] = {
        p.name: {"shape": list(np.load(p, mmap_mode="r").shape), "sha256": file_sha256(p)}
        for p in sorted(tmp.glob("*.npy"))
    }
    (tmp / "lens.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    save_folder(tmp, dest, overwrite)
    return load_lens(dest)


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


def _fit_depth(
    kind: str,
    layer: int,
    n_depth: int,
    x: NDArray[np.float32],
    h_last: NDArray[np.float32],
    fold: NDArray[np.int64],
    reads: list[Any],
    final_z: list[NDArray[np.float64]],
    sets: Any,
    state: _Arrays,
    seed: int,
    max_iter: int,
) -> DepthScores:
    """Fit every fold's translator at one depth, write it, score its held-out examples."""
    k = len(reads)
    last = layer == n_depth - 1
    stats = shortcut.fold_stats(x, h_last, fold, k) if kind == "shortcut" and not last else None
    scores = DepthScores()
    for f in range(k):
        train, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        logit_z = reads[f].logits(x[held])
        lens_z = logit_z
        rec: dict[str, Any] = {"layer": layer, "identity": last}
        rng = np.random.default_rng([seed, LOO_STREAM, f])
        if last:
            pass  # the identity: zeros already written, temperature 1
        elif kind == "temperature":
            log_p = set_log_probs(final_z[f][train])
            beta = temperature.fit_beta(log_p, reads[f].logits(x[train]))
            state.temperature[f, layer] = 1.0 / beta
            lens_z, rec["temperature"] = beta * logit_z, 1.0 / beta
        elif kind == "shortcut":
            assert stats is not None
            loo = np.sort(rng.choice(train, min(train.size, shortcut.LOO_ROWS), replace=False))
            fit = shortcut.fit_fold(stats, f, x[loo], h_last[loo] - x[loo])
            state.affine(f, layer, fit.weight, fit.bias)
            lens_z = reads[f].logits(x[held] + x[held] @ fit.weight + fit.bias)
            rec.update(penalty=fit.relative, loo_mse=fit.loo[int(np.argmin(fit.loo))])
            rec["loo_mse_identity"] = float(fit.loo[-1])
        else:
            fit_t = tuned.fit_tuned(
                x[train],
                set_log_probs(final_z[f][train]),
                reads[f],
                seed=int(rng.integers(2**31)),
                max_iter=max_iter,
            )
            state.affine(f, layer, fit_t.weight, fit_t.bias)
            lens_z = reads[f].logits(x[held] + x[held] @ fit_t.weight + fit_t.bias)
            rec.update(
                iterations=fit_t.iterations,
                best_iteration=fit_t.best_iteration,
                train_kl=fit_t.train_kl,
                validation_kl=fit_t.validation_kl,
            )
        state.records[f].append(rec)
        scores.add(
            lens_z,
            logit_z,
            final_z[f][held],
            sets.ids[f],
            sets.final_top1[held],
            sets.final_lse[held],
        )
    return scores


PENALTY_RULES = {
    "temperature": "none: one scalar per depth and fold",
    "shortcut": "ridge towards the identity (B = 0, b = 0); penalty per depth and fold by "
    "leave-one-out cross-validation on the fold's training examples (exact leave-one-out "
    f"residuals of {shortcut.LOO_ROWS} seeded training examples, from one eigendecomposition of "
    "the training Gram matrix); grid: "
    f"{', '.join(f'{g:g}' for g in shortcut.PENALTY_GRID)} times the mean eigenvalue, and inf "
    "(the logit lens); `penalty` is the chosen multiple",
    "tuned": "early stopping by inner validation: L-BFGS from the identity on "
    f"{1 - tuned.VALIDATION_FRACTION:.0%} of the fold's training examples, keeping the iterate "
    f"of least KL on the other {tuned.VALIDATION_FRACTION:.0%} (stopped after "
    f"{tuned.PATIENCE} iterations without improvement)",
}


def _info(
    ds: xr.Dataset,
    kind: str,
    k: int,
    seed: int,
    fold: NDArray[np.int64],
    sets: Any,
    state: _Arrays,
    rows: list[dict[str, Any]],
    max_iter: int,
) -> dict[str, Any]:
    from layercal import __version__, git_commit

    ident = ds.attrs["layercal"]["identity"]
    penalties: dict[str, Any] = {"rule": PENALTY_RULES[kind], "per_fold": state.records}
    if kind == "tuned":
        penalties["max_iter"] = max_iter
    return {
        "format": LENS_FORMAT,
        "format_version": LENS_VERSION,
        "kind": kind,
        "translator": TRANSLATOR[kind],
        "store": str(ds.encoding.get("source", "")),
        "store_hash": store_hash(ds),
        "w_u_sha256": w_u_fingerprint(ds),
        "model": ident.get("model"),
        "dataset": ident.get("dataset"),
        "split": ident.get("split"),
        "n_examples": int(ds.sizes["example"]),
        "n_depth": int(ds.sizes["layer"]),
        "hidden": int(ds.sizes["hidden"]),
        "labels_used": False,
        "folds": {"k": k, "seed": seed, "rule": FOLD_RULE, "sizes": np.bincount(fold).tolist()},
        "token_set": {"rule": TOKEN_SET_RULE, "top_k": sets.top_k, "size": int(sets.ids.shape[1])},
        "penalties": penalties,
        "transfer_rule": TRANSFER_RULE,
        "diagnostics": {
            "measured_on": "held-out examples, each through its own fold's translator, on that "
            "fold's token set",
            "per_depth": rows,
        },
        "layercal_version": __version__,
        "git_commit": git_commit(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
