"""The controls of a steering run, and the contrast of the direction with temperature scaling.

- **temperature**: the unsteered logits divided by one T chosen on dev by the run's rule.
- **random directions**: unit vectors whose null-space share equals the direction's. An
  isotropic random unit vector has a share of about √(k/d) in N_k (0.10 for k = d/100), far
  below a fitted direction's, and steering along N_k mostly changes the residual's norm, hence
  the lens's temperature; a control that differs in that share would differ for that reason
  alone. So each is drawn as g ~ N(0, I_d) (seeded), split into its part in N_k, a = B Bᵀ g, and
  the rest, b = g − a, and set to u = s · a/‖a‖ + √(1 − s²) · b/‖b‖, s = ‖Bᵀ v‖ the direction's
  share: ‖u‖ = 1 and ‖Bᵀ u‖ = s exactly, and u is otherwise uniformly random. Without an SVD
  (no null basis) they are isotropic, and the run's meta says so.
- **direction+temperature**: the direction at its chosen α, then one T chosen on dev by the same
  rule on top of the steered logits: whether the direction adds anything to what one
  temperature does.

:func:`contrast_table`: the paired differences direction − temperature and
direction+temperature − temperature on the test split, every table metric with its interval and
MDE (the same resamples for both sides).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from analyze.calibration import paired_deltas
from analyze.interventions.estimators import unit
from analyze.interventions.steer_data import TABLE_METRICS, Splits, StoreData
from analyze.interventions.steer_methods import (
    Family,
    Method,
    fixed,
    scaled,
    sweep_rows,
    temperature,
)
from analyze.interventions.steer_power import mde
from analyze.interventions.steer_select import Rule, fit_temperature_by

CONTRASTS = (("direction", "temperature"), ("direction+temperature", "temperature"))


def random_direction(d: int, seed: int) -> NDArray[np.float64]:
    """A uniformly random unit vector (d,): the isotropic control."""
    return unit(np.random.default_rng([seed, 0x2A4D]).normal(size=d))


def matched_direction(
    v: NDArray[np.float64], basis: NDArray[np.float64], seed: int
) -> NDArray[np.float64]:
    """A random unit vector (d,) whose share in span(basis) (d, k) equals that of unit ``v``."""
    g = np.random.default_rng([seed, 0x2A4D]).normal(size=v.size)
    b = np.asarray(basis, np.float64)
    inside = b @ (b.T @ g)
    share = min(1.0, float(np.linalg.norm(b.T @ unit(np.asarray(v, np.float64)))))
    return share * unit(inside) + np.sqrt(1.0 - share**2) * unit(g - inside)


def temperature_method(
    data: StoreData,
    splits: Splits,
    base_dev: NDArray[Any],
    base_test: NDArray[Any],
    rule: Rule,
    n_bins: int,
) -> Method:
    """Temperature scaling of the unsteered logits (the baseline's), T chosen on dev."""
    dev = splits.dev
    t = fit_temperature_by(base_dev, data.label[dev], data.mask[dev], rule, n_bins)
    m = Method("temperature", data.layer, t, temperature(t))
    for (split, rows), z in zip(splits.named(), (base_dev, base_test)):
        m.sweep += sweep_rows(m.name, [t], split, z[None] / t, data, rows, n_bins)
    m.z_dev, m.z_test = base_dev / t, base_test / t
    m.z_power, m.power_param = m.z_test, t
    return m


def direction_temperature(
    direction: Method,
    along: Family | None,
    data: StoreData,
    splits: Splits,
    rule: Rule,
    n_bins: int,
) -> Method:
    """The direction at its chosen α, then T chosen on dev on the steered logits; ``param`` is
    T (α is the direction's). ``along``: the direction's offline family (None: online only)."""
    if direction.z_dev is None or direction.z_test is None:
        raise ValueError("choose the direction's α before fitting a temperature on top of it")
    dev = splits.dev
    t = fit_temperature_by(direction.z_dev, data.label[dev], data.mask[dev], rule, n_bins)
    offline = None if along is None else scaled(fixed(along, direction.param), t)
    m = Method("direction+temperature", direction.layer, t, offline)
    for (split, rows), z in zip(splits.named(), (direction.z_dev, direction.z_test)):
        m.sweep += sweep_rows(m.name, [t], split, np.asarray(z)[None] / t, data, rows, n_bins)
    m.z_dev, m.z_test = direction.z_dev / t, direction.z_test / t
    m.z_power, m.power_param = m.z_test, t
    return m


def contrast_table(
    methods: dict[str, Method],
    data: StoreData,
    rows: NDArray[np.intp],
    *,
    n_bins: int = 10,
    n_boot: int = 1000,
    seed: int = 0,
) -> pl.DataFrame:
    """One row per pair of CONTRASTS present: ``method``, ``reference``, ``n``, and for every
    table metric the method's value, the reference's (``<m>_reference``), the paired change
    ``d_<m>`` = method − reference with ``d_<m>_lo``/``_hi`` and ``d_<m>_mde``."""
    pairs = [(a, b) for a, b in CONTRASTS if a in methods and b in methods]
    if not pairs:
        return pl.DataFrame()
    new = np.stack([np.asarray(methods[a].z_test) for a, _ in pairs])
    ref = np.stack([np.asarray(methods[b].z_test) for _, b in pairs])
    res = paired_deltas(
        ref, new, data.label[rows], data.mask[rows], n_bins=n_bins, n_boot=n_boot, seed=seed
    )
    out = []
    for j, (a, b) in enumerate(pairs):
        row: dict[str, Any] = {"method": a, "reference": b, "n": int(rows.size)}
        for k in TABLE_METRICS:
            r = res[k]
            lo, hi = float(r["delta_lo"][j]), float(r["delta_hi"][j])
            row |= {k: float(r["new"][j]), f"{k}_reference": float(r["base"][j])}
            row |= {f"d_{k}": float(r["delta"][j]), f"d_{k}_lo": lo, f"d_{k}_hi": hi}
            row[f"d_{k}_mde"] = mde(lo, hi)
        out.append(row)
    return pl.DataFrame(out)
