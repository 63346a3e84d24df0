"""Steering with a calibration direction, and its controls (methods.md section 6).

At depth l, ``h ← h + α·s·d``: d the direction's unit vector for l, s its recorded mean residual
norm at l (so α is relative), α on a grid. Where the lens is read:

- at the last depth (default): offline on the stored residuals when l is the last depth; at
  other depths the logits come from the model (``extract.online.steer``), as a :data:`Sweeper`;
- at l itself (``truncated``): the model cut at depth l, read through the lens there — exact
  offline from the stored residuals at l.

Every method's one scalar (α, T or β) is chosen on a dev split by one rule
(:mod:`~analyze.interventions.steer_select`) and everything is reported on a disjoint test
split (:mod:`~analyze.interventions.steer_splits`), each change against the unsteered *none*
(the stored lens offline; online, the online α = 0 run, checked against the stored lens:
:mod:`~analyze.interventions.steer_baseline`) with paired intervals and the effect it could
have detected (:mod:`~analyze.interventions.steer_power`). Controls
(:mod:`~analyze.interventions.steer_controls`): temperature scaling, null-space β scaling at the
depth read, random directions with the direction's null-space share, and direction+temperature,
which with the direction is contrasted with temperature alone. Transfer applies every method
unchanged to each category's held-out examples and to other stores of the same model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import xarray as xr
from numpy.typing import NDArray

from analyze.interventions.artifact import Direction, DirectionError, check_direction
from analyze.interventions.steer_baseline import Baseline, OnlineSweeps, baseline
from analyze.interventions.steer_controls import (
    contrast_table,
    direction_temperature,
    matched_direction,
    random_direction,
    temperature_method,
)
from analyze.interventions.steer_data import Splits, StoreData, Sweeper
from analyze.interventions.steer_methods import Family, Method, along, choose_on_dev, null_scaling
from analyze.interventions.steer_select import RULE_BOOT, Rule, Select
from analyze.interventions.steer_splits import steering_splits, transfer_targets
from analyze.interventions.steer_tables import method_table, reliability_table, transfer_table
from analyze.interventions.svd import default_k
from analyze.lens.store import store_hash

DEFAULT_ALPHAS = (-1.0, -0.75, -0.5, -0.25, -0.1, 0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
DEFAULT_BETAS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 4.0)  # 1 = unchanged, so "no change" is allowed
DEFAULT_RANDOM = 5
DIRECTION_KEYS = ("estimator", "window", "window_source", "store_hash", "model", "dataset", "split")
__all__ = ["SteerResult", "run_steering", "steering_splits"]


@dataclass
class SteerResult:
    """``table``: test split, one row per method (metrics, intervals, changes vs none, MDE);
    ``sweep``: every (method, param, split); ``reliability``: test split, (method, bin);
    ``transfer``: (target, method) changes vs none; ``contrasts``: direction − temperature and
    direction+temperature − temperature; ``meta``: choices, rule, splits, provenance."""

    table: pl.DataFrame
    sweep: pl.DataFrame
    reliability: pl.DataFrame
    transfer: pl.DataFrame
    contrasts: pl.DataFrame = field(default_factory=pl.DataFrame)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Setup:
    """What every method of one run shares: the store's data at the depth read (``read``), the
    splits, the steered depth ``layer``, the direction there (unit ``v``, scale ``s``), the
    online sweeps (None: offline) and the rule."""

    data: StoreData
    splits: Splits
    layer: int
    read: int
    v: NDArray[np.float64]
    s: float
    online: OnlineSweeps | None
    rule: Rule
    n_bins: int

    def choose(self, m: Method, values: Sequence[float], neutral: float, fam: Family) -> Method:
        choose_on_dev(m, values, neutral, fam, self.data, self.splits, self.rule, self.n_bins)
        return m

    def family(self, vec: NDArray[np.float64]) -> Family:
        """Steering along ``vec``: offline on the stored residual, or by the model."""
        return along(vec, self.s) if self.online is None else self.online.family(vec)

    def along_offline(self, vec: NDArray[np.float64]) -> Family | None:
        """The offline family for transfer: only where the depth steered is the depth read."""
        return along(vec, self.s) if self.layer == self.read else None


def _check_layer(
    ds: xr.Dataset, layer: int | None, sweeper: Sweeper | None, truncated: bool
) -> tuple[int, int]:
    """The depth to steer (None: the last) and the depth whose lens is read."""
    last = int(ds.sizes["layer"]) - 1
    layer = last if layer is None else int(layer)
    if not 0 <= layer <= last:
        raise DirectionError(f"layer {layer} is outside the store's depths 0..{last}")
    if truncated:
        if sweeper is not None:
            raise DirectionError(
                "a truncated run reads the lens at the steered depth from the stored residuals "
                "(offline, exact); the model is not needed: drop --online"
            )
        return layer, layer
    if layer != last and sweeper is None:
        raise DirectionError(
            f"steering at depth {layer} changes every later layer, which needs the model: run "
            f"`layercal steer STORE --direction DIR --online --model MODEL --layer {layer}`, or "
            f"read the lens at depth {layer} itself with `--layer {layer} --truncated`."
        )
    return layer, last


def _methods(
    st: _Setup,
    alphas: Sequence[float],
    betas: Sequence[float] | None,
    randoms: tuple[int, int, NDArray[np.float64] | None],
    null_basis: NDArray[np.float64] | None,
    model_dtype: str | None,
) -> tuple[Baseline, list[Method]]:
    """The baseline, then the direction and its controls in the table's order: temperature,
    nullspace, random-i, direction+temperature. Online, the direction's sweep runs first: its
    α = 0 run is the baseline, checked before anything else runs."""
    d = Method("direction", st.layer, offline=st.along_offline(st.v))
    st.choose(d, alphas, 0.0, st.family(st.v))
    base = baseline(st.data, st.splits, layer=st.layer, online=st.online, model_dtype=model_dtype)
    data, rule, bins = st.data, st.rule, st.n_bins
    methods = [d, temperature_method(data, st.splits, base.dev, base.test, rule, bins)]
    if null_basis is not None and betas is not None:
        fam = null_scaling(null_basis)
        m = st.choose(Method("nullspace", st.read, offline=fam), betas, 1.0, fam)
        if st.online is not None:  # it scales stored residuals: against its own β = 1
            m.ref_test = data.lens.logits(data.h[st.splits.test])
        methods.append(m)
    n_random, seed, share_basis = randoms
    for i in range(n_random):
        u = (
            random_direction(st.v.size, seed + i)
            if share_basis is None
            else matched_direction(st.v, share_basis, seed + i)
        )
        m = Method(f"random-{i}", st.layer, offline=st.along_offline(u))
        methods.append(st.choose(m, alphas, 0.0, st.family(u)))
    along_v = st.along_offline(st.v)
    methods.append(direction_temperature(d, along_v, data, st.splits, rule, bins))
    return base, methods


def run_steering(
    ds: xr.Dataset,
    direction: Direction,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    layer: int | None = None,
    truncated: bool = False,
    dev_fraction: float = 0.5,
    seed: int = 0,
    n_random: int = DEFAULT_RANDOM,
    betas: Sequence[float] = DEFAULT_BETAS,
    svd: Any = None,
    nullspace: bool = True,
    k: int | None = None,
    select: Select = "nll",
    accuracy_margin: float = 0.02,
    max_accuracy_drop: float | None = None,
    n_bins: int = 10,
    n_boot: int = 1000,
    sweeper: Sweeper | None = None,
    transfer: Sequence[tuple[str, xr.Dataset]] = (),
    limit: int | None = None,
    model_dtype: str | None = None,
) -> SteerResult:
    """Steer ``ds`` with ``direction`` at depth ``layer`` (None: the last) and evaluate.

    ``truncated``: read the lens at ``layer`` instead of the last depth (offline, exact).
    ``sweeper``: logits of steered examples from the model (needed below the last depth unless
    truncated); None = offline. Online, every change is against the online α = 0 run, which must
    equal the stored lens within the dtype's tolerance (``model_dtype``: the online model's
    dtype, None = float32). ``svd``: an ``UnembedSVD``: its N_k (k = ``k``, default
    round(0.01 d)) gives the null-space control (``nullspace``) and the null-space share the
    random directions match (None: neither; isotropic random directions). ``select``,
    ``accuracy_margin``, ``max_accuracy_drop`` (deprecated): the dev rule (:class:`Rule`).
    ``transfer``: (label, store) pairs of the same model, evaluated offline at the depth read
    with every choice unchanged; this store's categories always are.
    """
    check_direction(direction, ds)
    layer, read = _check_layer(ds, layer, sweeper, truncated)
    alphas = sorted(set(float(a) for a in alphas) | {0.0})
    data = StoreData.at(ds, read)
    splits = steering_splits(data, direction, dev_fraction, seed, limit)
    v, s = direction.at(layer), direction.scale_at(layer)
    online = None if sweeper is None else OnlineSweeps(sweeper, s)
    rule = Rule(select, accuracy_margin, max_accuracy_drop, n_boot or RULE_BOOT, seed)
    st = _Setup(data, splits, layer, read, v, s, online, rule, n_bins)
    kk = default_k(v.size) if k is None else k
    basis = None if svd is None else svd.null_basis(kk)
    betas = sorted(set(float(b) for b in betas) | {1.0})
    base, methods = _methods(
        st, alphas, betas, (n_random, seed, basis), basis if nullspace else None, model_dtype
    )
    test = splits.test
    boot = {"n_bins": n_bins, "n_boot": n_boot, "seed": seed}
    table = method_table(methods, base.test, data, test, **boot).with_columns(
        pl.lit(base.info["kind"]).alias("baseline"),
        pl.lit(base.info["max_abs_diff_vs_stored"], pl.Float64).alias("baseline_max_abs_diff"),
    )
    by_name = {m.name: m for m in methods}
    shown = {"none": base.test} | {
        n: np.asarray(by_name[n].z_test) for n in ("direction", "temperature")
    }
    targets = transfer_targets(data, splits, direction, transfer, read)
    meta = _meta(st, direction, ds, methods, base, alphas, betas, kk, basis, n_random) | {
        "n_boot": n_boot,
        "n_bins": n_bins,
    }
    return SteerResult(
        table=table,
        sweep=pl.DataFrame([r for m in methods for r in m.sweep]),
        reliability=reliability_table(shown, data, test, n_bins),
        transfer=transfer_table(methods, targets, n_bins, n_boot, seed),
        contrasts=contrast_table(by_name, data, test, **boot),
        meta=meta,
    )


def _meta(
    st: _Setup,
    direction: Direction,
    ds: xr.Dataset,
    methods: list[Method],
    base: Baseline,
    alphas: list[float],
    betas: list[float],
    k: int,
    basis: NDArray[np.float64] | None,
    n_random: int,
) -> dict[str, Any]:
    """The run's record: depths, grids, choices, the rule, the controls and the splits."""
    names = [m.name for m in methods]
    same = direction.info.get("store_hash") == store_hash(ds)
    share = None if basis is None else float(np.linalg.norm(basis.T @ st.v))
    return {
        "layer": st.layer,
        "read_layer": st.read,
        "truncated": st.read != int(ds.sizes["layer"]) - 1,
        "last_layer": int(ds.sizes["layer"]) - 1,
        "scale": st.s,
        "alphas": alphas,
        "betas": betas if "nullspace" in names else [],
        "k": k,
        "n_random": n_random,
        "random_directions": {
            "kind": "isotropic" if basis is None else "null_share_matched",
            "k": k,
            "null_space_share": share,
        },
        "select": st.rule.select,
        "accuracy_margin": st.rule.margin,
        "max_accuracy_drop": st.rule.max_drop,
        "selection": st.rule.record(),
        "chosen": {m.name: m.param for m in methods},
        "combined": {"alpha": methods[0].param, "temperature": methods[-1].param},
        "power_param": {m.name: m.power_param for m in methods},
        "references": {m.name: _reference(m) for m in methods},
        "splits": st.splits.info,
        "direction_store": "this store" if same else "another store of the same model",
        "mode": "offline" if st.online is None else "online",
        "baseline": base.info,
        "direction": {key: direction.info.get(key) for key in DIRECTION_KEYS},
    }


def _reference(m: Method) -> str:
    return "none" if m.ref_test is None else "its own β = 1 (it scales stored residuals)"
