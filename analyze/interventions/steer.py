"""Steering with a calibration direction, and its baselines (methods.md section 6).

At depth l, ``h ← h + α·s·d``: d the direction's unit vector for l, s its recorded mean residual
norm at l (so α is relative), α on a grid. At the last depth this is exact offline on the stored
residuals; at other depths the logits come from the model (``extract.online.steer``), passed in
as a :data:`Sweeper`. α is chosen on a dev split — the smallest ECE among the α whose accuracy is
at most ``max_accuracy_drop`` below α = 0's — and everything is reported on a disjoint test split.
Every change is against the unsteered baseline *none*: the stored lens offline, the online α = 0
run online, checked against the stored lens (:mod:`~analyze.interventions.steer_baseline`).

Splits: the examples the direction was fit on are excluded; if the direction was fit on one
category (or subject list) present in this store, the rest of that domain is the "source"; the
source is split per subject and seeded into dev and test. Baselines, chosen on dev the same way:
temperature scaling, random unit directions (one per seed, own α) and scaling the null space N_k
at the last depth by β. Transfer applies every method unchanged (same d, s, α, T, β) to each
category's held-out examples and to other stores of the same model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import xarray as xr
from numpy.typing import NDArray

from analyze.calibration import DIRECTION_STREAM, as_str, fit_temperature, stratified_split
from analyze.interventions.artifact import Direction, DirectionError, check_direction, ids_sha256
from analyze.interventions.estimators import unit
from analyze.interventions.steer_baseline import Baseline, OnlineSweeps, baseline
from analyze.interventions.steer_data import Splits, StoreData, Sweeper
from analyze.interventions.steer_methods import (
    Family,
    Method,
    along,
    choose_on_dev,
    method_table,
    null_scaling,
    reliability_table,
    sweep_rows,
    temperature,
    transfer_table,
)
from analyze.interventions.svd import default_k

DEFAULT_ALPHAS = (-1.0, -0.75, -0.5, -0.25, -0.1, 0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
DEFAULT_BETAS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 4.0)  # 1 = unchanged, so "no change" is allowed
MAX_ACCURACY_DROP = 0.005  # half a point
DIRECTION_KEYS = ("estimator", "window", "window_source", "store_hash", "model", "dataset", "split")


def steering_splits(
    data: StoreData, direction: Direction, dev_fraction: float, seed: int, limit: int | None = None
) -> Splits:
    """Dev/test rows of the source domain, never touching the direction's fit examples."""
    fit = np.isin(data.example_id, as_str(direction.fit_ids))
    src = ~fit
    split = direction.info.get("split", {})
    domain = "all examples"
    if split.get("category") and split["category"] in set(data.category.tolist()):
        src &= data.category == split["category"]
        domain = f"category {split['category']}"
    if split.get("subjects") and set(split["subjects"]) <= set(data.subject.tolist()):
        src &= np.isin(data.subject, split["subjects"])
        domain += f", subjects {split['subjects']}"
    rows = np.flatnonzero(src)
    is_dev = stratified_split(
        data.subject[rows], data.example_id[rows], dev_fraction, seed, DIRECTION_STREAM
    )
    dev, test = rows[is_dev], rows[~is_dev]
    if limit is not None:  # seeded subsample, for online runs on a CPU
        rng = np.random.default_rng([seed, 0x11A17])
        dev, test = (np.sort(rng.permutation(x)[:limit]) for x in (dev, test))
    if dev.size < 2 or test.size < 2:
        raise DirectionError(
            f"steering needs examples for dev and test; the source domain ({domain}) has "
            f"{rows.size} held out from the fit ({int(fit.sum())} were fit on). Use a larger "
            "store, or a direction fit on a smaller --fit-fraction."
        )
    info = {
        "source": domain,
        "seed": seed,
        "dev_fraction": dev_fraction,
        "excluded_fit_examples": int(fit.sum()),
        "n_dev": int(dev.size),
        "n_test": int(test.size),
        "dev_ids_sha256": ids_sha256(data.example_id[dev]),
        "test_ids_sha256": ids_sha256(data.example_id[test]),
        "limit": limit,
    }
    return Splits(dev, test, info)


def random_direction(d: int, seed: int) -> NDArray[np.float64]:
    """A uniformly random unit vector (d,), the equal-norm control."""
    return unit(np.random.default_rng([seed, 0x2A4D]).normal(size=d))


@dataclass
class SteerResult:
    """``table``: test split, one row per method (metrics, intervals, changes vs none);
    ``sweep``: every (method, param, split); ``reliability``: test split, (method, bin);
    ``transfer``: (target, method) changes vs none; ``meta``: choices, splits, provenance."""

    table: pl.DataFrame
    sweep: pl.DataFrame
    reliability: pl.DataFrame
    transfer: pl.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Setup:
    """What every method of one steering run shares: the store's data at the steered depth, the
    splits, the direction at that depth (unit vector ``v``, scale ``s``) and how α is chosen."""

    data: StoreData
    splits: Splits
    layer: int
    last: int
    v: NDArray[np.float64]
    s: float
    online: OnlineSweeps | None
    max_drop: float
    n_bins: int

    def chosen(
        self, m: Method, values: Sequence[float], neutral: float, fam: Family
    ) -> NDArray[Any]:
        """Sweep ``values`` on dev and test; the test logits at the value chosen on dev."""
        return choose_on_dev(
            m, values, neutral, fam, self.data, self.splits, self.max_drop, self.n_bins
        )

    def family(self, vec: NDArray[np.float64]) -> Family:
        """Steering along ``vec``: offline on the stored residual, or by the model."""
        return along(vec, self.s) if self.online is None else self.online.family(vec)

    def along_offline(self, vec: NDArray[np.float64]) -> Family | None:
        """The offline family for transfer: only at the last depth (else None)."""
        return along(vec, self.s) if self.layer == self.last else None


def _check_layer(ds: xr.Dataset, layer: int | None, sweeper: Sweeper | None) -> tuple[int, int]:
    """The depth to steer (None: the last) and the last depth; offline needs the last."""
    last = int(ds.sizes["layer"]) - 1
    layer = last if layer is None else int(layer)
    if not 0 <= layer <= last:
        raise DirectionError(f"layer {layer} is outside the store's depths 0..{last}")
    if layer != last and sweeper is None:
        raise DirectionError(
            f"steering at depth {layer} changes every later layer, which needs the model: run "
            f"`layercal steer STORE --direction DIR --online --model MODEL --layer {layer}`."
        )
    return layer, last


def _temperature_method(st: _Setup, base: Baseline) -> tuple[Method, NDArray[Any]]:
    """Temperature scaling of the baseline logits (the unsteered model), T fitted on dev."""
    data, dev = st.data, st.splits.dev
    t = fit_temperature(base.dev, data.label[dev], data.mask[dev])
    m = Method("temperature", st.last, t, temperature(t))
    for (split, rows), z in zip(st.splits.named(), (base.dev, base.test)):
        m.sweep += sweep_rows(m.name, [t], split, z[None] / t, data, rows, st.n_bins)
    return m, base.test / t


def _methods(
    st: _Setup,
    alphas: Sequence[float],
    n_random: int,
    seed: int,
    betas: Sequence[float],
    null_basis: NDArray[np.float64] | None,
    kk: int,
    model_dtype: str | None,
) -> tuple[Baseline, list[tuple[Method, NDArray[Any]]]]:
    """The baseline, then the direction and the baselines (temperature, random directions, the
    null space), each with its test logits at the parameter chosen on dev. Online, the
    direction's sweep runs first: its α = 0 run is the baseline, checked before anything else
    is run."""
    m = Method("direction", st.layer, offline=st.along_offline(st.v))
    methods = [(m, st.chosen(m, alphas, 0.0, st.family(st.v)))]
    base = baseline(st.data, st.splits, layer=st.layer, online=st.online, model_dtype=model_dtype)
    methods.append(_temperature_method(st, base))
    for i in range(n_random):
        u = random_direction(st.v.size, seed + i)
        m = Method(f"random-{i}", st.layer, offline=st.along_offline(u))
        methods.append((m, st.chosen(m, alphas, 0.0, st.family(u))))
    if null_basis is not None:
        fam = null_scaling(null_basis)
        m = Method(f"nullspace-k{kk}", st.last, offline=fam)
        methods.append((m, st.chosen(m, betas, 1.0, fam)))
    return base, methods


def _targets(
    st: _Setup, direction: Direction, transfer: Sequence[tuple[str, xr.Dataset]]
) -> list[tuple[str, StoreData, NDArray[np.intp]]]:
    """Transfer targets: this store's categories (held-out rows), then the other stores."""
    data = st.data
    targets = [
        (f"category {c}", data, _held_out(data, direction, st.splits, data.category == c))
        for c in sorted(set(data.category.tolist()))
    ]
    for label, other in transfer:
        check_direction(direction, other, where=label)
        od = StoreData.of(other)
        targets.append((label, od, _held_out(od, direction, None, np.ones(od.label.size, bool))))
    return targets


def run_steering(
    ds: xr.Dataset,
    direction: Direction,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    layer: int | None = None,
    dev_fraction: float = 0.5,
    seed: int = 0,
    n_random: int = 3,
    betas: Sequence[float] = DEFAULT_BETAS,
    svd: Any = None,
    k: int | None = None,
    max_accuracy_drop: float = MAX_ACCURACY_DROP,
    n_bins: int = 10,
    n_boot: int = 1000,
    sweeper: Sweeper | None = None,
    transfer: Sequence[tuple[str, xr.Dataset]] = (),
    limit: int | None = None,
    model_dtype: str | None = None,
) -> SteerResult:
    """Steer ``ds`` with ``direction`` at depth ``layer`` (None: the last) and evaluate.

    ``sweeper``: logits of steered examples from the model (needed below the last depth);
    None = offline on the stored residual. Online, every change is against the online α = 0
    run, which must equal the stored lens within the dtype's tolerance (``model_dtype``: the
    online model's dtype, None = float32; :mod:`~analyze.interventions.steer_baseline`).
    ``svd``: an ``UnembedSVD`` for the null-space baseline (None: no such baseline).
    ``transfer``: (label, store) pairs of the same model, evaluated offline with every choice
    unchanged; this store's categories always are.
    """
    check_direction(direction, ds)
    layer, last = _check_layer(ds, layer, sweeper)
    alphas = sorted(set(float(a) for a in alphas) | {0.0})
    data = StoreData.of(ds)
    splits = steering_splits(data, direction, dev_fraction, seed, limit)
    v, s = direction.at(layer), direction.scale_at(layer)
    online = None if sweeper is None else OnlineSweeps(sweeper, s)
    st = _Setup(data, splits, layer, last, v, s, online, max_accuracy_drop, n_bins)
    kk = default_k(v.size) if k is None else k
    if svd is not None:
        betas = sorted(set(float(b) for b in betas) | {1.0})
    null_basis = None if svd is None else svd.null_basis(kk)
    base, methods = _methods(st, alphas, n_random, seed, betas, null_basis, kk, model_dtype)
    test = splits.test
    table = method_table(methods, base.test, data, test, n_bins=n_bins, n_boot=n_boot, seed=seed)
    table = table.with_columns(
        pl.lit(base.info["kind"]).alias("baseline"),
        pl.lit(base.info["max_abs_diff_vs_stored"], pl.Float64).alias("baseline_max_abs_diff"),
    )
    shown = {"none": base.test, **{m.name: z for m, z in methods[:2]}}
    targets = _targets(st, direction, transfer)
    meta = {
        "layer": layer,
        "last_layer": last,
        "scale": s,
        "alphas": alphas,
        "betas": list(betas),
        "k": kk,
        "n_random": n_random,
        "max_accuracy_drop": max_accuracy_drop,
        "chosen": {m.name: m.param for m, _ in methods},
        "splits": splits.info,
        "n_boot": n_boot,
        "n_bins": n_bins,
        "mode": "offline" if sweeper is None else "online",
        "baseline": base.info,
        "direction": {key: direction.info.get(key) for key in DIRECTION_KEYS},
    }
    return SteerResult(
        table=table,
        sweep=pl.DataFrame([r for m, _ in methods for r in m.sweep]),
        reliability=reliability_table(shown, data, test, n_bins),
        transfer=transfer_table([m for m, _ in methods], targets, n_bins, n_boot, seed),
        meta=meta,
    )


def _held_out(
    data: StoreData, direction: Direction, splits: Splits | None, keep: NDArray[np.bool_]
) -> NDArray[np.intp]:
    """Rows of ``keep`` neither fit on nor used to choose α (the dev split)."""
    out = keep & ~np.isin(data.example_id, as_str(direction.fit_ids))
    if splits is not None:
        out[splits.dev] = False
    return np.flatnonzero(out)
