"""A fitted lens, loaded (:func:`load_lens`) and applied to a store: the translator before the
stored final norm and unembedding.

:func:`bind` ties a :class:`~.artifact.FittedLens` to an opened store. On the store it was
fitted on, every example is read through the translator of its own fold (fitted on the other
folds); a store it was not fitted on is refused unless ``transfer`` (another dataset of the same
model: the W_U fingerprint, hidden size and depth must match), where every example is read
through the mean of the fold translators. :meth:`BoundLens.lensed` gives the store with ``resid``
replaced by the translated residuals (lazily, chunk by chunk) and the logit scale 1/T of the
temperature lens, so every analysis runs unchanged on it: the translated residual goes through
the stored final norm and unembedding, and the logits are multiplied by the scale.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from numpy.typing import NDArray

from analyze.calibration.splits import as_str
from analyze.lens.fitted.artifact import (
    AFFINE_KINDS,
    KINDS,
    LENS_FORMAT,
    LENS_VERSION,
    TRANSFER_RULE,
    LensError,
    npy_offset,
    read_block,
    w_u_fingerprint,
)
from analyze.lens.store import store_hash
from analyze.lens.vocab import recorded_checks

TRANSFER = -1  # the fold of an example read through the mean of the fold translators


@dataclass(frozen=True)
class FittedLens:
    """A lens folder: ``path``, ``info`` (lens.json), ``name`` (the folder's name)."""

    path: Path
    info: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def kind(self) -> str:
        return str(self.info["kind"])

    def array(self, name: str) -> NDArray[Any]:
        """A small array of the folder, whole (not ``weight.npy``: see :func:`read_block`)."""
        return np.load(self.path / name, allow_pickle=False)

    def record(self, transfer: bool) -> dict[str, Any]:
        """What an analysis records of the lens (``landmarks.json``'s ``lens``)."""
        keys = ("kind", "store", "store_hash", "model", "dataset", "folds", "token_set")
        out = {"name": self.name, "path": str(self.path), **{k: self.info.get(k) for k in keys}}
        out["sha256"] = hashlib.sha256((self.path / "lens.json").read_bytes()).hexdigest()
        out["transfer"] = bool(transfer)
        return out

    def bind(self, ds: xr.Dataset, transfer: bool = False) -> BoundLens:
        """The lens applied to the opened store ``ds``; raises :class:`LensError` when the
        store is not the one it was fitted on (unless ``transfer``) or is of another model."""
        return bind(self, ds, transfer)


def load_lens(folder: str | os.PathLike[str]) -> FittedLens:
    """Read a lens folder written by ``layercal lens fit``; raises :class:`LensError`."""
    d = Path(folder)
    if not (d / "lens.json").is_file():
        raise LensError(
            f"{d} is not a lens folder (no lens.json). Fit one with "
            "`layercal lens fit STORE -o DIR --kind temperature|shortcut|tuned`."
        )
    info = json.loads((d / "lens.json").read_text())
    if info.get("format") != LENS_FORMAT or info.get("format_version") != LENS_VERSION:
        raise LensError(
            f"{d}/lens.json is format {info.get('format')!r} version "
            f"{info.get('format_version')!r}; this layercal reads {LENS_FORMAT!r} version "
            f"{LENS_VERSION}. Refit it with `layercal lens fit`."
        )
    if info.get("kind") not in KINDS:
        raise LensError(f"{d}/lens.json has kind {info.get('kind')!r}; expected one of {KINDS}")
    for name, rec in info.get("arrays", {}).items():
        path = d / name
        if not path.is_file():
            raise LensError(f"{d} lacks {name}, which lens.json lists: refit the lens")
        if npy_offset(path)[1] != tuple(rec["shape"]):
            raise LensError(
                f"{path} has shape {npy_offset(path)[1]}, lens.json says {rec['shape']}"
            )
    return FittedLens(d, info)


@dataclass(frozen=True)
class BoundLens:
    """``lens`` applied to one store: ``fold`` (n,) the fold whose translator reads each example
    of the store (TRANSFER: the mean of all), ``depths`` the store's depths along its ``layer``
    axis, ``transfer`` whether the store is another than the one the lens was fitted on."""

    lens: FittedLens
    fold: NDArray[np.int64]
    depths: tuple[int, ...]
    transfer: bool

    @property
    def name(self) -> str:
        return self.lens.name

    @property
    def kind(self) -> str:
        return self.lens.kind

    @property
    def last(self) -> int:
        return int(self.lens.info["n_depth"]) - 1

    def record(self) -> dict[str, Any]:
        """The lens as an analysis records it (``landmarks.json``'s ``lens``)."""
        out = self.lens.record(self.transfer)
        out["cross_fitted"] = not self.transfer
        if self.transfer:
            out["transfer_rule"] = TRANSFER_RULE
        return out

    def checks(
        self,
        recorded: xr.Dataset,
        z: NDArray[np.float64],
        lse: NDArray[np.float64],
        entropy: NDArray[np.float64],
    ) -> tuple[dict[str, Any], list[str], xr.Dataset]:
        """:func:`~analyze.lens.vocab.recorded_checks` of the lens's (n, L', K) answer logits
        ``z`` and (n, L') full-vocabulary ``lse``, ``entropy`` at the last depth only, where
        the lens is the identity; and ``recorded`` without what is the logit lens's own at the
        other depths (lse set to nan, no entropy: option mass and entropy from the sample)."""
        last = (slice(None), slice(-1, None))
        checks, warnings = recorded_checks(
            recorded.isel(layer=[-1]), z[last], lse[last], entropy[last]
        )
        checks["compared_depths"] = "the last depth only (the identity under every lens)"
        rest = recorded.drop_vars("lens_entropy", errors="ignore")
        rest["lens_lse"] = rest["lens_lse"] * np.nan
        return checks, warnings, rest

    def annotate(self, meta: dict[str, Any]) -> None:
        """Record the lens in an analysis' ``meta`` (in place)."""
        meta["lens"] = self.record()
        meta["vocab"]["option_mass_lse"] = "recomputed through the lens (sampled examples only)"
        meta["vocab"]["option_mass"] = meta["vocab"]["entropy"] = (
            "recomputed through the lens for the sampled examples only (the values recorded at "
            "extraction are the logit lens's)"
        )

    def inverse_temperature(self) -> NDArray[np.float64] | None:
        """(n, L') the logit scale 1 / T of every example at the store's depths; None unless
        the lens is a temperature lens."""
        if self.kind != "temperature":
            return None
        inv = 1.0 / np.asarray(self.lens.array("temperature.npy"), np.float64)  # (F, L)
        table = np.vstack([inv, inv.mean(axis=0, keepdims=True)])  # row -1: TRANSFER
        return table[self.fold][:, list(self.depths)]

    def translate(self, h: NDArray[np.floating[Any]], rows: slice, layers: slice) -> NDArray[Any]:
        """Translated residuals of a (m, l, d) block of the store at ``rows`` and ``layers``
        (positions along example and layer); float32."""
        out = np.array(h, np.float32)
        if self.kind not in AFFINE_KINDS:
            return out
        folds = self.fold[rows]
        for j, depth in enumerate(self.depths[layers]):
            if depth == self.last:
                continue  # the identity in every fold
            for f in np.unique(folds):
                sel = folds == f
                w, b = self._translator(int(f), depth)
                x = out[sel, j]
                out[sel, j] = x + x @ w + b
        return out

    def _translator(self, f: int, depth: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        path = self.lens.path
        folds = range(int(self.lens.info["folds"]["k"])) if f == TRANSFER else [f]
        w = sum(read_block(path / "weight.npy", (g, depth)).astype(np.float64) for g in folds)
        b = sum(read_block(path / "bias.npy", (g, depth)).astype(np.float64) for g in folds)
        return (np.asarray(w) / len(folds)).astype(np.float32), (np.asarray(b) / len(folds)).astype(
            np.float32
        )

    def lensed(self, ds: xr.Dataset) -> tuple[xr.Dataset, da.Array | None]:
        """``ds`` with ``resid`` translated lazily (same chunks; hidden in one chunk), and the
        (example, layer) logit scale as a dask array with the same chunks (None: 1)."""
        resid = ds["resid"].data
        if not isinstance(resid, da.Array):
            resid = da.from_array(np.asarray(resid), chunks=(2048, 1, -1))
        resid = resid.rechunk({2: -1})
        if self.kind in AFFINE_KINDS:
            resid = resid.map_blocks(
                _translate_block, dtype=np.float32, meta=np.empty((0, 0, 0), np.float32), bound=self
            )
        out = ds.copy()
        out["resid"] = (ds["resid"].dims, resid)
        inv = self.inverse_temperature()
        scale = None if inv is None else da.from_array(inv, chunks=resid.chunks[:2])
        return out, scale


def _translate_block(
    h: NDArray[Any], block_info: dict[Any, Any] | None = None, bound: BoundLens | None = None
) -> NDArray[np.float32]:
    assert bound is not None and block_info is not None
    (r0, r1), (l0, l1), _ = block_info[0]["array-location"]
    return bound.translate(h, slice(r0, r1), slice(l0, l1))


def bind(lens: FittedLens, ds: xr.Dataset, transfer: bool = False) -> BoundLens:
    """``lens`` applied to the opened store ``ds``; raises :class:`LensError` when the store is
    not the one the lens was fitted on (unless ``transfer``) or is of another model."""
    info = lens.info
    depths = tuple(int(x) for x in ds["layer"].values)
    ids = as_str(ds["example_id"].values)
    here = store_hash(ds)
    origin = f"{info.get('model')} on {info.get('dataset')} (store hash {info.get('store_hash')})"
    if here == info.get("store_hash"):
        table = dict(zip(as_str(lens.array("example_id.npy")).tolist(), lens.array("fold.npy")))
        missing = [i for i in ids.tolist() if i not in table]
        if missing:
            raise LensError(
                f"{len(missing)} examples of this store (first: {missing[0]}) were not in the fit "
                f"of lens {lens.path}: it was fitted on another sample of {origin}. Refit it on "
                "this store (`layercal lens fit`), or pass --transfer to read every example "
                "through the mean of its fold translators."
            )
        fold = np.array([table[i] for i in ids.tolist()], np.int64)
        return BoundLens(lens, fold, depths, False)
    if not transfer:
        raise LensError(
            f"lens {lens.path} was fitted on {origin}, not on this store (store hash {here}). "
            "Pass --transfer to apply it to another dataset of the same model, or fit one on "
            "this store: `layercal lens fit STORE -o DIR --kind KIND`."
        )
    theirs, ours = str(info.get("w_u_sha256")), w_u_fingerprint(ds)
    hidden, n_depth = int(ds.sizes["hidden"]), int(ds.attrs["layercal"]["layout"]["n_depth"])
    if theirs != ours or int(info["hidden"]) != hidden or int(info["n_depth"]) != n_depth:
        raise LensError(
            f"lens {lens.path} was fitted on {origin}: W_U sha256 {theirs[:16]}..., hidden "
            f"{info['hidden']}, {info['n_depth']} depths; this store has {ours[:16]}..., "
            f"{hidden}, {n_depth}: another model. A lens transfers only between datasets of "
            "the same model; fit one on this store with `layercal lens fit`."
        )
    return BoundLens(lens, np.full(ids.size, TRANSFER, np.int64), depths, True)
