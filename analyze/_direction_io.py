"""The calibration-direction artifact, and the store access the direction fit needs.

The artifact is a folder with ``direction.npz`` and ``direction.json``.

Self-describing and linked to where it came from: the store (hash, model, W_U sha256, hidden
size), the example subset it was fit on (ids and their sha256), the depth window, the estimator and
the split seed, and the layercal version. ``check_direction`` refuses to apply a direction to a
store of another model. docs/steering.md documents every field.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from analyze._binning import bin_sums, ece_from_sums
from analyze._probs import answer_probs
from analyze.store import norm_spec_of, store_hash
from analyze.svd import w_u_fingerprint
from layercal.lens import NormSpec, lens_logits

ARTIFACT_FORMAT = "layercal-direction"
ARTIFACT_VERSION = 1


class DirectionError(ValueError):
    """A direction cannot be fit, loaded or applied as asked; the message says what to do."""


class DirectionMismatchError(DirectionError):
    """The direction was fit on another model (hidden size or W_U differ) than the store's."""


@dataclass
class Direction:
    """A fitted direction and where it came from (``info``: the JSON record).

    ``vector``: (d,) unit. ``per_layer``: (m, d) unit rows for the window's target depths
    (estimator per_layer) or None. ``explained``: pca spectrum or None. ``scale``: (L,) mean
    residual norm at every depth on the fit split — s in h ← h + α·s·d. ``fit_ids``: (n_fit,).
    """

    vector: NDArray[np.float64]
    scale: NDArray[np.float64]
    fit_ids: NDArray[Any]
    info: dict[str, Any] = field(default_factory=dict)
    per_layer: NDArray[np.float64] | None = None
    explained: NDArray[np.float64] | None = None

    @property
    def hidden(self) -> int:
        return int(self.vector.shape[0])

    @property
    def window(self) -> tuple[int, int]:
        start, end = self.info["window"]
        return int(start), int(end)

    def at(self, layer: int) -> NDArray[np.float64]:
        """The unit direction to steer with at depth ``layer`` (per_layer: that depth's row)."""
        start, end = self.window
        if self.per_layer is not None and start < layer <= end:
            return self.per_layer[layer - start - 1]
        return self.vector

    def scale_at(self, layer: int) -> float:
        if not 0 <= layer < self.scale.size:
            raise DirectionError(f"depth {layer} is outside 0..{self.scale.size - 1}")
        return float(self.scale[layer])

    def save(self, folder: str | Path) -> Path:
        """Write ``direction.npz`` and ``direction.json`` into ``folder``; returns it."""
        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {
            "vector": self.vector,
            "scale": self.scale,
            "fit_example_ids": as_str(self.fit_ids),
        }
        if self.per_layer is not None:
            arrays["per_layer"] = self.per_layer
        if self.explained is not None:
            arrays["explained_variance"] = self.explained
        np.savez(d / "direction.npz", **arrays)
        (d / "direction.json").write_text(json.dumps(self.info, indent=2, default=str) + "\n")
        return d

    @classmethod
    def load(cls, folder: str | Path) -> Direction:
        d = Path(folder)
        if not (d / "direction.json").is_file() or not (d / "direction.npz").is_file():
            raise DirectionError(
                f"{d} is not a direction folder (it needs direction.json and direction.npz). "
                "Make one with `layercal direction fit STORE -o DIR`."
            )
        info = json.loads((d / "direction.json").read_text())
        if info.get("format") != ARTIFACT_FORMAT or info.get("version") != ARTIFACT_VERSION:
            raise DirectionError(
                f"{d}/direction.json is format {info.get('format')!r} version "
                f"{info.get('version')!r}; this layercal reads {ARTIFACT_FORMAT!r} version "
                f"{ARTIFACT_VERSION}. Refit with `layercal direction fit`."
            )
        with np.load(d / "direction.npz", allow_pickle=False) as z:
            get = {k: z[k] for k in z.files}
        vec = np.asarray(get["vector"], np.float64)
        if vec.shape != (int(info["hidden"]),):
            raise DirectionError(f"{d}: vector has shape {vec.shape}, json says {info['hidden']}")
        return cls(
            vector=vec,
            scale=np.asarray(get["scale"], np.float64),
            fit_ids=get["fit_example_ids"],
            info=info,
            per_layer=get.get("per_layer"),
            explained=get.get("explained_variance"),
        )


def check_direction(direction: Direction, ds: xr.Dataset, where: str = "the store") -> None:
    """Refuse a direction fit on another model: hidden size and W_U fingerprint must match."""
    hidden = int(ds.sizes["hidden"])
    origin = f"{direction.info.get('model')} (store {direction.info.get('store_hash')})"
    if direction.hidden != hidden:
        raise DirectionMismatchError(
            f"the direction was fit on {origin} with hidden size {direction.hidden}, but "
            f"{where} has hidden size {hidden}: a direction applies only to the model it was fit "
            "on. Fit one on this store: `layercal direction fit STORE -o DIR`."
        )
    w_u = w_u_fingerprint(ds)
    if direction.info.get("w_u_sha256") != w_u:
        raise DirectionMismatchError(
            f"the direction was fit on {origin} whose unembedding has sha256 "
            f"{str(direction.info.get('w_u_sha256'))[:16]}..., but {where} has "
            f"{w_u[:16]}...: another model (or another revision). A direction applies only to "
            "the model it was fit on. Fit one on this store: `layercal direction fit STORE -o DIR`."
        )
    if direction.scale.size != int(ds.sizes["layer"]):
        raise DirectionMismatchError(
            f"the direction records {direction.scale.size} depths, {where} has "
            f"{int(ds.sizes['layer'])}: not the same model."
        )


def provenance(ds: xr.Dataset) -> dict[str, Any]:
    """Store identity fields recorded in a direction's JSON."""
    from layercal import __version__, git_commit

    ident = ds.attrs.get("layercal", {}).get("identity", {})
    return {
        "store": str(ds.encoding.get("source", "")),
        "store_hash": store_hash(ds),
        "model": ident.get("model"),
        "dataset": ident.get("dataset"),
        "w_u_sha256": w_u_fingerprint(ds),
        "hidden": int(ds.sizes["hidden"]),
        "n_depth": int(ds.sizes["layer"]),
        "layercal_version": __version__,
        "git_commit": git_commit(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def as_str(values: Any) -> NDArray[np.str_]:
    """A fixed-width unicode array from any strings (numpy 2 StringDType does not cast)."""
    return np.array([str(v) for v in np.asarray(values).tolist()], dtype=str)


def stratified_split(
    subject: NDArray[Any], example_id: NDArray[Any], fraction: float, seed: int
) -> NDArray[np.bool_]:
    """(n,) bool, True for a seeded ``fraction`` of every subject's examples (the "fit" part).

    Depends only on the example ids, not on their order; ``fraction · m`` is rounded up or down
    at random so that small subjects do not all round the same way.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    subject, example_id = as_str(subject), as_str(example_id)
    rng = np.random.default_rng([seed, 0xD12EC7])
    out = np.zeros(subject.size, bool)
    for s in sorted(set(subject.tolist())):
        members = np.flatnonzero(subject == s)
        members = members[np.argsort(example_id[members], kind="stable")]
        n_fit = int(np.floor(fraction * members.size + rng.random()))
        out[members[rng.permutation(members.size)[:n_fit]]] = True
    return out


def ids_sha256(ids: Sequence[str] | NDArray[Any]) -> str:
    """sha256 of the sorted example ids, one per line: names an example subset."""
    return hashlib.sha256("\n".join(sorted(str(i) for i in ids)).encode()).hexdigest()


@dataclass(frozen=True)
class AnswerLens:
    """The lens on the answer tokens only: rows of W_U (K, d), their bias, the final norm."""

    w_ans: NDArray[np.float64]
    b_ans: NDArray[np.float64] | None
    spec: NormSpec

    @classmethod
    def of(cls, ds: xr.Dataset) -> AnswerLens:
        ids = np.asarray(ds["answer_token_ids"].values)
        w = np.asarray(ds["W_U"].isel(vocab=ids).values, np.float64)
        b = ds["lm_head_bias"].isel(vocab=ids).values if "lm_head_bias" in ds else None
        return cls(w, None if b is None else np.asarray(b, np.float64), norm_spec_of(ds))

    def logits(self, h: NDArray[np.floating]) -> NDArray[np.float64]:
        """(..., d) residuals -> (..., K) answer logits (float64)."""
        return lens_logits(h, self.w_ans, self.spec, self.b_ans)


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
    return stratified_split(ds["subject"].values, ds["example_id"].values, fraction, seed)


def choose_window(
    ds: xr.Dataset, rows: NDArray[np.intp], lens: AnswerLens, last_m: int, seed: int
) -> tuple[tuple[int, int], str, list[str], NDArray[np.float64]]:
    """Window (start, end) depths, its source, notes, and the mean residual norm per depth (L,).

    Reads every depth of ``rows`` once: for the norms and for the landmarks on those examples.
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
    try:
        from analyze.landmarks import depth_landmarks
    except ImportError:
        return fallback, "last_m", ["analyze.landmarks is not available"], norms
    acc = correct.mean(axis=1)
    sums = [bin_sums(conf[i], correct[i], 10) for i in range(n_depth)]
    ece = np.array([ece_from_sums(*s) for s in sums])
    marks = depth_landmarks(
        np.arange(n_depth),
        acc,
        ece,
        conf,
        correct,
        float(mask.sum(1).mean()),
        n_boot=200,
        seed=seed,
    )
    cp = marks.get("correction_phase")
    if not cp:
        notes = [str(x) for x in marks.get("notes", [])] or ["no correction phase"]
        return fallback, "last_m", [*notes, f"fell back to the last {last_m} layers"], norms
    return (int(cp["start"]), int(cp["end"])), "correction_phase", [], norms


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
