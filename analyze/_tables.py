"""Pieces of ``analyze_store``: examples and splits, temperature, group-bys, meta.

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

from analyze import metrics as M
from analyze._binning import bin_index, bin_sums, ece_from_sums
from analyze._probs import answer_probs, nll_terms
from analyze.results import GROUP_COLUMNS
from analyze.store import store_hash


def example_table(ds: xr.Dataset) -> tuple[pl.DataFrame, NDArray[np.bool_]]:
    """The store's examples: a table (example_id, subject, category, label, n_choices; n rows)
    and the choice mask (n, K).

    (``analyze.store.examples_frame`` also holds the question text; this reads only what the
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


def split_halves(
    subject: NDArray[Any], example_id: NDArray[Any], fraction: float, seed: int
) -> NDArray[np.bool_]:
    """True for the "fit" half: per subject a seeded ``fraction`` of its examples, (n,) bool.

    Depends only on the set of example ids, the fraction and the seed (not on store order);
    ``fraction * m`` is rounded up or down at random so small subjects do not all fall one way.
    """
    rng = np.random.default_rng([seed, 0x5B117])
    is_fit = np.zeros(len(subject), dtype=bool)
    for s in sorted(set(subject.tolist())):
        members = np.flatnonzero(subject == s)
        members = members[np.argsort(example_id[members], kind="stable")]
        n_fit = int(np.floor(fraction * members.size + rng.random()))
        is_fit[members[rng.permutation(members.size)[:n_fit]]] = True
    return is_fit


def nanmean0(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Mean over axis 0 of the finite values; nan where a column has none. (n, L) -> (L,)."""
    ok = np.isfinite(x)
    return np.where(ok, x, 0.0).sum(axis=0) / np.maximum(ok.sum(axis=0), 1) + np.where(
        ok.any(axis=0), 0.0, np.nan
    )


def fit_temperatures(
    z: NDArray[np.float64], label: NDArray[Any], mask: NDArray[np.bool_] | None = None
) -> NDArray[np.float64]:
    """``metrics.fit_temperature`` for every layer at once: z (L, n, K) -> T (L,).

    The mean NLL of softmax(β z) is convex in β = 1/T, with gradient mean(E_p[z] - z_label) and
    curvature mean(Var_p[z]); a safeguarded Newton iteration on β (bisection whenever a step
    leaves the bracket) finds the minimum in the same bounds, TEMPERATURE_BOUNDS.
    """
    present = np.ones(z.shape[1:], bool) if mask is None else np.asarray(mask, bool)
    zz = np.where(present, z, 0.0)
    absent = np.where(present, 0.0, -np.inf)
    z_label = np.take_along_axis(zz, np.asarray(label)[None, :, None], axis=-1)[..., 0]

    def grad_curv(
        beta: NDArray[np.float64], idx: NDArray[np.intp]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        zi = zz[idx]
        s = beta[:, None, None] * zi + absent
        p = np.exp(s - s.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        pz = p * zi
        ez = pz.sum(axis=-1)
        var = (pz * zi).sum(axis=-1) - ez * ez
        return (ez - z_label[idx]).mean(axis=-1), np.maximum(var, 0.0).mean(axis=-1)

    t_lo, t_hi = M.TEMPERATURE_BOUNDS
    every = np.arange(z.shape[0])
    lo = np.full(z.shape[0], 1.0 / t_hi)
    hi = np.full(z.shape[0], 1.0 / t_lo)
    g_lo, g_hi = grad_curv(lo, every)[0], grad_curv(hi, every)[0]
    # the optimum lies beyond a bound when the gradient there already points outwards
    beta = np.where(g_lo >= 0, lo, np.where(g_hi <= 0, hi, 1.0))
    active = np.flatnonzero((g_lo < 0) & (g_hi > 0))
    for _ in range(100):
        if active.size == 0:
            break
        b = beta[active]
        g_a, c = grad_curv(b, active)
        lo[active] = np.where(g_a < 0, b, lo[active])
        hi[active] = np.where(g_a < 0, hi[active], b)
        step = b - g_a / np.where(c > 0, c, np.inf)
        ok = (step > lo[active]) & (step < hi[active]) & (c > 0)
        new = np.where(ok, step, np.sqrt(lo[active] * hi[active]))
        beta[active] = new
        active = active[(np.abs(new - b) > 1e-9 * b) & (hi[active] - lo[active] > 1e-9 * b)]
    return 1.0 / beta


def ece_nll(
    z: NDArray[np.float64], label: NDArray[Any], mask: NDArray[np.bool_], bins: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """ECE and mean NLL per layer (as ``per_layer_metrics``, only these two): z (L, n, K)."""
    lab = np.asarray(label, np.intp)
    probs = answer_probs(z, mask)
    correct = (probs.argmax(axis=-1) == lab).astype(np.float64)
    ece = ece_from_sums(*bin_sums(probs.max(axis=-1), correct, bins))
    return ece, nll_terms(probs, lab).mean(axis=-1)


def temperature_columns(
    z: NDArray[np.float64],
    label: NDArray[Any],
    mask: NDArray[np.bool_],
    is_fit: NDArray[np.bool_],
    bins: int,
) -> tuple[dict[str, NDArray[np.float64]], dict[str, Any]]:
    """Per-layer temperature fitted on the fit half, ECE/NLL measured on the eval half.

    ``z``: (L, n, K) logits of every example of the store. Returns (L,) arrays ``temperature``,
    ``ece_temperature_scaled``, ``nll_temperature_scaled``, ``ece_eval``, ``nll_eval`` (unscaled,
    same eval examples) and an info dict (sizes, warnings, ``at_bound``: positions along L
    whose temperature is a bound of TEMPERATURE_BOUNDS).
    """
    n_layers = z.shape[0]
    fit, ev = np.flatnonzero(is_fit), np.flatnonzero(~is_fit)
    info: dict[str, Any] = {"n_fit": int(fit.size), "n_eval": int(ev.size), "warnings": []}
    nan = np.full(n_layers, np.nan)
    if fit.size < 2 or ev.size < 1:
        info["warnings"].append("too few examples to fit and evaluate temperature scaling")
        names = ("temperature", "ece_temperature_scaled", "nll_temperature_scaled")
        return {k: nan.copy() for k in (*names, "ece_eval", "nll_eval")}, info
    temps = fit_temperatures(z[:, fit], label[fit], mask[fit])
    at_bound = np.isin(np.round(temps, 3), np.round(M.TEMPERATURE_BOUNDS, 3))
    info["at_bound"] = np.flatnonzero(at_bound).tolist()
    plain = ece_nll(z[:, ev], label[ev], mask[ev], bins)
    scaled = ece_nll(z[:, ev] / temps[:, None, None], label[ev], mask[ev], bins)
    return {
        "temperature": temps,
        "ece_temperature_scaled": scaled[0],
        "nll_temperature_scaled": scaled[1],
        "ece_eval": plain[0],
        "nll_eval": plain[1],
    }, info


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
) -> pl.DataFrame:
    """by_group table (GROUP_COLUMNS) with polars group-bys.

    ``frame``: the n analysed examples (columns named in ``group_by``); ``conf``, ``correct``,
    ``brier``, ``nll``: (L, n) per-example values at each of ``layers``.
    """
    n_layers, n = conf.shape
    long = pl.DataFrame(
        {
            "layer": np.repeat(np.asarray(layers, np.int64), n),
            "conf": conf.ravel(),
            "correct": correct.ravel(),
            "brier": brier.ravel(),
            "nll": nll.ravel(),
            "bin": bin_index(conf, bins).ravel(),
            **{g: np.tile(frame[g].to_numpy(), n_layers) for g in group_by},
        }
    )
    parts = []
    for g in group_by:
        keys = [g, "layer"]
        per_bin = long.group_by([*keys, "bin"]).agg(
            count=pl.len(), gap=(pl.col("correct").sum() - pl.col("conf").sum()).abs()
        )
        cal = per_bin.group_by(keys).agg(
            ece=pl.col("gap").sum() / pl.col("count").sum(),
            mce=(pl.col("gap") / pl.col("count")).filter(pl.col("count") >= min_count).max(),
        )
        means = long.group_by(keys).agg(
            n=pl.len(),
            accuracy=pl.col("correct").mean(),
            mean_confidence=pl.col("conf").mean(),
            brier=pl.col("brier").mean(),
            nll=pl.col("nll").mean(),
        )
        part = means.join(cal, on=keys).rename({g: "group"}).with_columns(group_by=pl.lit(g))
        parts.append(part.select(GROUP_COLUMNS))
    if not parts:
        return pl.DataFrame(schema={c: pl.Float64 for c in GROUP_COLUMNS})
    out = pl.concat(parts).with_columns(pl.col("mce").fill_null(float("nan")))
    return out.sort("group_by", "group", "layer")


def select_examples(
    ds: xr.Dataset, params: dict[str, Any]
) -> tuple[pl.DataFrame, NDArray[np.bool_], NDArray[np.bool_], NDArray[np.intp], NDArray[np.bool_]]:
    """Example table, choice mask (n, K), fit half (n,), analysed rows and full-vocab sample."""
    frame, mask = example_table(ds)
    subject, ex_id = frame["subject"].to_numpy(), frame["example_id"].to_numpy()
    is_fit = split_halves(subject, ex_id, params["temperature_split"], params["seed"])
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
