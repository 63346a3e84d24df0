"""The tables of a steering evaluation, one convention: metric values with 95% percentile-
bootstrap intervals (``*_lo``/``*_hi``), changes against the unsteered model (``d_*``) with paired
intervals over the same resamples and the MDE at 80% power of each change (``d_*_mde``:
:mod:`~analyze.interventions.steer_power`), and beside ECE its noise floor and the smooth ECE.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from analyze.calibration import (
    bin_sums,
    draw_weights,
    ece_floor,
    logit_terms,
    paired_deltas,
    smece,
)
from analyze.interventions.steer_data import TABLE_METRICS, StoreData
from analyze.interventions.steer_methods import Method
from analyze.interventions.steer_power import mde

TRANSFER_METRICS = ("accuracy", "ece", "mce", "brier", "nll")


def _metric_columns(res: dict[str, dict[str, NDArray[np.float64]]], j: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in TABLE_METRICS:
        r = res[k]
        out |= {k: r["new"][j], f"{k}_lo": r["new_lo"][j], f"{k}_hi": r["new_hi"][j]}
        out |= {
            f"d_{k}": r["delta"][j],
            f"d_{k}_lo": r["delta_lo"][j],
            f"d_{k}_hi": r["delta_hi"][j],
        }
    return {k: float(v) for k, v in out.items()}


def _mde_columns(res: dict[str, dict[str, NDArray[np.float64]]] | None, j: int) -> dict[str, Any]:
    """d_<metric>_mde of every table metric from the j-th paired interval (nan: none)."""
    nan = float("nan")
    if res is None:
        return {f"d_{k}_mde": nan for k in TABLE_METRICS}
    return {
        f"d_{k}_mde": mde(float(res[k]["delta_lo"][j]), float(res[k]["delta_hi"][j]))
        for k in TABLE_METRICS
    }


def smooth_columns(
    logits: NDArray[Any],
    label: NDArray[Any],
    mask: NDArray[np.bool_],
    *,
    n_bins: int = 10,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, NDArray[np.float64]]:
    """Per row of logits (G, n, K): ``ece_floor`` (the expected ``n_bins`` ECE of a perfectly
    calibrated predictor with the row's confidences at this n, by seeded simulation:
    :func:`analyze.calibration.ece_floor`), ``smece`` (relplot's smooth ECE) and its 95%
    percentile-bootstrap interval ``smece_lo``/``smece_hi`` over the resamples of every other
    interval (``draw_weights`` with ``seed``; nan when ``n_boot`` is 0)."""
    t = logit_terms(np.asarray(logits, np.float64), label, mask)
    conf, correct = t["mean_confidence"], t["accuracy"]
    g, n = conf.shape
    out = {
        "ece_floor": np.asarray(ece_floor(conf, n_bins, seed=seed), np.float64),
        "smece": np.asarray(smece(conf, correct), np.float64),
        "smece_lo": np.full(g, np.nan),
        "smece_hi": np.full(g, np.nan),
    }
    if n_boot > 0:
        w = draw_weights(n, n_boot, seed).astype(np.float64)
        for j in range(g):
            reps = smece(np.broadcast_to(conf[j], w.shape), np.broadcast_to(correct[j], w.shape), w)
            out["smece_lo"][j], out["smece_hi"][j] = np.quantile(reps, [0.025, 0.975])
    return out


def method_table(
    methods: Sequence[Method],
    base: NDArray[Any],
    data: StoreData,
    rows: NDArray[np.intp],
    *,
    n_bins: int = 10,
    n_boot: int = 1000,
    seed: int = 0,
) -> pl.DataFrame:
    """Test-split table: "none" (logits ``base`` (len(rows), K)) then each method at its chosen
    value, changes against its reference (*none* unless ``ref_test``), with paired intervals
    and the MDE at 80% power (:mod:`~analyze.interventions.steer_power`) of each change."""
    label, mask = data.label[rows], data.mask[rows]
    kw = {"n_bins": n_bins, "n_boot": n_boot, "seed": seed}

    def ref(m: Method) -> NDArray[Any]:
        return base if m.ref_test is None else np.asarray(m.ref_test)

    z = np.stack([base, *[np.asarray(m.z_test) for m in methods]])
    b = np.stack([base, *[ref(m) for m in methods]])
    res = paired_deltas(b, z, label, mask, **kw)
    powered = [j for j, m in enumerate(methods) if m.z_power is not None]
    power = None
    if powered and n_boot > 0:
        zp = np.stack([np.asarray(methods[j].z_power) for j in powered])
        power = paired_deltas(np.stack([ref(methods[j]) for j in powered]), zp, label, mask, **kw)
    smooth = smooth_columns(z, label, mask, **kw)
    nan = float("nan")
    out = [
        {"method": "none", "layer": data.layer, "param": nan, "n": int(rows.size)}
        | _metric_columns(res, 0)
        | _mde_columns(None, 0)
        | {"mde_param": nan}
    ]
    for j, m in enumerate(methods):
        at = powered.index(j) if j in powered else None
        out.append(
            {"method": m.name, "layer": m.layer, "param": m.param, "n": int(rows.size)}
            | _metric_columns(res, j + 1)
            | _mde_columns(power if at is not None else None, at or 0)
            | {"mde_param": m.power_param}
        )
    for j, row in enumerate(out):
        row |= {k: float(v[j]) for k, v in smooth.items()}
    return pl.DataFrame(out)


def reliability_table(
    logits: dict[str, NDArray[Any]], data: StoreData, rows: NDArray[np.intp], n_bins: int = 10
) -> pl.DataFrame:
    """Reliability-diagram data per method: (method, bin) count, mean confidence, accuracy."""
    out = []
    for name, z in logits.items():
        t = logit_terms(np.asarray(z)[None], data.label[rows], data.mask[rows])
        count, s_conf, s_corr = bin_sums(t["mean_confidence"][0], t["accuracy"][0], n_bins)
        for b in range(n_bins):
            c = int(count[b])
            out.append(
                {
                    "method": name,
                    "bin": b,
                    "bin_lo": b / n_bins,
                    "bin_hi": (b + 1) / n_bins,
                    "count": c,
                    "mean_confidence": float(s_conf[b] / c) if c else float("nan"),
                    "accuracy": float(s_corr[b] / c) if c else float("nan"),
                }
            )
    return pl.DataFrame(out)


def transfer_table(
    methods: Sequence[Method],
    targets: Sequence[tuple[str, StoreData, NDArray[np.intp]]],
    n_bins: int = 10,
    n_boot: int = 1000,
    seed: int = 0,
) -> pl.DataFrame:
    """Every offline-applicable method, its choice unchanged, on each (label, data, rows)."""
    out = []
    usable = [m for m in methods if m.offline is not None]
    for label, data, rows in targets:
        if rows.size < 2 or not usable:
            continue
        base = data.lens.logits(data.h[rows])
        z = np.stack([np.asarray(m.offline(data, rows, [m.param])[0]) for m in usable if m.offline])
        b = np.broadcast_to(base, z.shape)
        lab, mask = data.label[rows], data.mask[rows]
        res = paired_deltas(b, z, lab, mask, n_bins=n_bins, n_boot=n_boot, seed=seed)
        for j, m in enumerate(usable):
            row = {"target": label, "method": m.name, "param": m.param, "n": int(rows.size)}
            for k in TRANSFER_METRICS:
                r = res[k]
                row[f"{k}_base"], row[f"d_{k}"] = float(r["base"][j]), float(r["delta"][j])
                row[f"d_{k}_lo"], row[f"d_{k}_hi"] = (
                    float(r["delta_lo"][j]),
                    float(r["delta_hi"][j]),
                )
            out.append(row)
    return pl.DataFrame(out)
