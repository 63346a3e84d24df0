"""The calibration-direction artifact: what a fit produces and steering reads back.

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

from analyze.calibration import as_str
from analyze.interventions.svd import w_u_fingerprint
from analyze.lens.store import store_hash

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
    (estimator per_layer) or None. ``explained``: explained-variance spectrum of the window's
    deltas centred per layer, or None; ``explained_pooled``: the same centred on their pooled
    mean, or None. ``scale``: (L,) mean residual norm at every depth on the fit split — s in
    h ← h + α·s·d. ``fit_ids``: (n_fit,). ``control``: (d,) unit, the same estimator on the
    early control window (``info["control_window"]``), or None.
    """

    vector: NDArray[np.float64]
    scale: NDArray[np.float64]
    fit_ids: NDArray[Any]
    info: dict[str, Any] = field(default_factory=dict)
    per_layer: NDArray[np.float64] | None = None
    explained: NDArray[np.float64] | None = None
    explained_pooled: NDArray[np.float64] | None = None
    control: NDArray[np.float64] | None = None

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
        optional = {
            "explained_variance": self.explained,
            "explained_variance_pooled": self.explained_pooled,
            "control_vector": self.control,
        }
        arrays.update({k: v for k, v in optional.items() if v is not None})
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
            explained_pooled=get.get("explained_variance_pooled"),
            control=get.get("control_vector"),
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


def ids_sha256(ids: Sequence[str] | NDArray[Any]) -> str:
    """sha256 of the sorted example ids, one per line: names an example subset."""
    return hashlib.sha256("\n".join(sorted(str(i) for i in ids)).encode()).hexdigest()
