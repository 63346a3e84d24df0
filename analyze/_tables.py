"""Pieces of ``analyze_store``: the examples and which of them are analysed, group-bys, meta.

Shapes: L layers, n examples, K options. Everything here works on arrays already in memory.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

import dask
import numpy as np
import polars as pl
import xarray as xr
from numpy.typing import NDArray

from analyze.calibration import (
    TEMPERATURE_STREAM,
    bin_sums,
    ece_from_sums,
    endpoint_rows,
    floor_of_cells,
    mce_from_sums,
    smece_of_groups,
    stratified_split,
)
from analyze.lens import store_hash
from analyze.results import GROUP_COLUMNS


def example_table(ds: xr.Dataset) -> tuple[pl.DataFrame, NDArray[np.bool_]]:
    """The store's examples: a table (example_id, subject, category, label, n_choices; n rows)
    and the choice mask (n, K).

    (``analyze.lens.examples_frame`` also holds the question text; this reads only what the
    analysis needs, all arrays in one parallel dask compute, StringDType columns via lists.)
    """
    names = ("example_id", "subject", "category", "label", "choice_mask")
    ex_id, subject, category, label, mask = dask.compute(*(ds[c].data for c in names))
    mask = np.asarray(mask, bool)
    frame = pl.DataFrame(
        {
            "example_id": pl.Series(np.asarray(ex_id).tolist(), dtype=pl.String),
            "subject": pl.Series(np.asarray(subject).tolist(), dtype=pl.String),
            "category": pl.Series(np.asarray(category).tolist(), dtype=pl.String),
            "label": np.asarray(label, np.int64),
            "n_choices": mask.sum(axis=1).astype(np.int64),
        }
    )
    return frame, mask


def nanmean0(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Mean over axis 0 of the finite values; nan where a column has none. (n, L) -> (L,)."""
    ok = np.isfinite(x)
    return np.where(ok, x, 0.0).sum(axis=0) / np.maximum(ok.sum(axis=0), 1) + np.where(
        ok.any(axis=0), 0.0, np.nan
    )


def group_metrics(
    frame: pl.DataFrame,
    conf: NDArray[np.float64],
    correct: NDArray[np.float64],
    brier: NDArray[np.float64],
    nll: NDArray[np.float64],
    layers: Sequence[int],
    group_by: Sequence[str],
    bins: int,
    min_count: int,
    *,
    floor: tuple[NDArray[np.int32], NDArray[np.float64], NDArray[np.intp]],
    weights_t: NDArray[np.float32] | None = None,
    alpha: float = 0.05,
) -> pl.DataFrame:
    """by_group table (GROUP_COLUMNS): one row per (group_by, group, layer), groups sorted.

    ``frame``: the n analysed examples (columns named in ``group_by``); ``conf``, ``correct``,
    ``brier``, ``nll``: (L, n) per-example values at each of ``layers``; ``floor``: the ECE
    floor's simulated sums per cell and the cell of each example (``cell_floor_sums``, cells
    that every group is a union of); ``weights_t`` (n, B): the bootstrap's draw counts
    (float32), given when the groups' smECE intervals are wanted (else smece_lo/hi are nan).
    """
    n_layers = conf.shape[0]
    lay = np.asarray(layers, np.int64)
    parts: dict[str, list[Any]] = {c: [] for c in GROUP_COLUMNS}
    for g in group_by:
        names, codes = np.unique(frame[g].to_numpy().astype(str), return_inverse=True)
        members = [np.flatnonzero(codes == j) for j in range(names.size)]
        sm_value, sm_sigma = smece_of_groups(conf, correct, members)
        for j, name in enumerate(names):
            idx = members[j]
            c, y = conf[:, idx], correct[:, idx]
            count, s_conf, s_corr = bin_sums(c, y, bins)
            w_t = None if weights_t is None else np.ascontiguousarray(weights_t[idx])
            ends = endpoint_rows(
                c,
                y,
                n_bins=bins,
                ece_floor=floor_of_cells(floor[0], floor[1], np.unique(floor[2][idx]), idx.size),
                weights=None if w_t is None else w_t.T,
                weights_t=w_t,
                alpha=alpha,
                smece_point=(sm_value[j], sm_sigma[j]),
            )
            cols = {
                "group_by": [g] * n_layers,
                "group": [str(name)] * n_layers,
                "layer": lay,
                "n": np.full(n_layers, idx.size, np.int64),
                "accuracy": y.mean(axis=1),
                "ece": ece_from_sums(count, s_conf, s_corr),
                "mce": mce_from_sums(count, s_conf, s_corr, min_count),
                "mean_confidence": c.mean(axis=1),
                "brier": brier[:, idx].mean(axis=1),
                "nll": nll[:, idx].mean(axis=1),
                **ends,
            }
            for k in GROUP_COLUMNS:
                parts[k].append(cols[k])
    if not parts["layer"]:
        return pl.DataFrame(schema={c: pl.Float64 for c in GROUP_COLUMNS})
    return pl.DataFrame({k: np.concatenate(v) for k, v in parts.items()}).select(GROUP_COLUMNS)


def select_examples(
    ds: xr.Dataset, params: dict[str, Any]
) -> tuple[pl.DataFrame, NDArray[np.bool_], NDArray[np.bool_], NDArray[np.intp], NDArray[np.bool_]]:
    """Example table, choice mask (n, K), fit half (n,), analysed rows and full-vocab sample."""
    frame, mask = example_table(ds)
    subject, ex_id = frame["subject"].to_numpy(), frame["example_id"].to_numpy()
    fraction, seed = params["temperature_split"], params["seed"]
    is_fit = stratified_split(subject, ex_id, fraction, seed, TEMPERATURE_STREAM)
    sel = {"all": np.ones_like(is_fit), "fit": is_fit, "eval": ~is_fit}[params["split"]]
    rows = np.flatnonzero(sel)
    if rows.size == 0:
        raise ValueError(f"the {params['split']!r} split of this store holds no examples")
    n_vocab = params["vocab_examples"]
    in_vocab = np.zeros(sel.size, bool)
    rng = np.random.default_rng([params["seed"], 0x70CAB])
    in_vocab[
        rows if n_vocab is None or n_vocab >= rows.size else rng.choice(rows, n_vocab, False)
    ] = True
    return frame, mask, is_fit, rows, in_vocab


def store_meta(
    ds: xr.Dataset, url: str, params: dict[str, Any], n: int, layers: list[int]
) -> dict[str, Any]:
    """Meta of an AnalysisResult: store, provenance, sizes, parameters (see results.py)."""
    info = ds.attrs["layercal"]
    ident, prov = info.get("identity", {}), info.get("provenance", {})
    data = prov.get("dataset", {})
    subjects = list(data.get("subjects") or [])
    # a whole benchmark lists every subject: name a few, count many (labels go into legends)
    few = ",".join(subjects) if len(subjects) <= 3 else f"{len(subjects)} subjects"
    scope = data.get("category") or (few if subjects else "")
    dataset = f"{ident.get('dataset')}/{ident.get('split')}" + (f" {scope}" if scope else "")
    return {
        "store": url,
        "label": f"{ident.get('model')} · {dataset}",
        "store_hash": store_hash(ds),
        "model": ident.get("model"),
        "dataset": ident.get("dataset"),
        "split": ident.get("split"),
        "category": data.get("category"),
        "template": prov.get("template", {}).get("name"),
        "n_examples": n,
        "n_examples_store": int(info["layout"]["n_examples"]),
        "partial": int(ds.sizes["example"]) < int(info["layout"]["n_examples"]),
        "n_layers": len(layers),
        "n_depth": int(info["layout"]["n_depth"]),
        "layers": layers,
        "params": params,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
