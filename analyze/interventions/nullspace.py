"""Null-space ablations on stored residuals (methods.md section 4).

At any stored depth l, the residual ``h`` (n, d) is changed in a k-dim subspace with orthonormal
basis B (d, k) and pushed through the logit lens::

    h' = h + (β − 1) B Bᵀ h      (β = 0: project the subspace out; β = 2: double it)

Subspaces: ``null`` (N_k, the k smallest right singular vectors of W̃ — for LayerNorm leaving out
1/√d, exactly null and removed by the norm anyway —, see ``analyze.interventions.svd``),
``top`` (the k largest) and ``random`` (Haar-random, one per seed): the controls. k sweeps over
fractions of d. Per (condition, layer): accuracy, ECE, MCE, Brier, NLL, entropy and mean
confidence with their changes and paired bootstrap intervals, and beside ECE its noise floor at
this n before and after (``ece_floor_base``, ``ece_floor``: the expected ECE of a perfectly
calibrated predictor with those confidences, ``analyze.calibration.ece_floor``). The mechanism in numbers: ``removed`` = ‖h′ − h‖/‖h‖,
``logit_change`` = ‖W̃(h′ − h)‖/‖W̃h‖ over the whole vocabulary before the final norm (exact and
cheap: ‖W̃x‖ = ‖Σ Rᵀx‖), their ratio ``logit_gain`` (1 = as much logit change as residual change;
N_k: < 1, it moves the norm — hence the lens's temperature — more than the logits) and
``norm_ratio`` = ‖h′‖/‖h‖. Also the
option mass (full-vocabulary probability of the answer tokens) on a seeded sample of examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl
import xarray as xr
from numpy.typing import NDArray

from analyze.calibration import (
    ece_floor_from_uniforms,
    floor_uniforms,
    logit_terms,
    mean_delta_ci,
    paired_deltas,
)
from analyze.interventions.svd import EXACT_NULL_NOTE, UnembedSVD, default_k, subspace_share
from analyze.lens import AnswerLens, vocab_lse_entropy
from layercal.lens import final_norm

Kind = Literal["null", "top", "random"]
DEFAULT_FRACTIONS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.25)
REPORTED = ("accuracy", "ece", "mce", "brier", "nll", "entropy", "mean_confidence")


def ablate(h: NDArray[np.floating], basis: NDArray[np.floating], beta: float = 0.0) -> Any:
    """h + (β − 1) B Bᵀ h over the last axis; h (..., d), B (d, k) orthonormal.

    k = 0 or β = 1 return ``h`` itself: the no-op is exact, not merely close.
    """
    b = np.asarray(basis, np.float64)
    if b.shape[1] == 0 or beta == 1.0:
        return h
    x = np.asarray(h, np.float64)
    return x + (beta - 1.0) * ((x @ b) @ b.T)


def random_basis(d: int, k: int, seed: int) -> NDArray[np.float64]:
    """(d, k) orthonormal basis of a uniformly random k-dim subspace (QR of a Gaussian)."""
    g = np.random.default_rng([seed, 0x0AB1A7E]).normal(size=(d, k))
    q, r = np.linalg.qr(g)
    return q * np.sign(np.diag(r))  # sign fix: the Haar measure, independent of LAPACK


def k_values(d: int, fractions: Sequence[float], cap: int | None = None) -> list[int]:
    """Distinct k = round(f d), clipped to 1..cap (default d), ascending."""
    top = d if cap is None else cap
    return sorted({min(top, max(1, round(f * d))) for f in fractions})


@dataclass(frozen=True)
class Condition:
    kind: Kind
    k: int
    beta: float
    seed: int | None = None

    @property
    def name(self) -> str:
        s = "" if self.seed is None else f"-s{self.seed}"
        return f"{self.kind}{s}-k{self.k}-b{self.beta:g}"

    def basis(self, svd: UnembedSVD) -> NDArray[np.float64]:
        if self.kind == "null":
            return svd.null_basis(self.k)
        if self.kind == "top":
            return svd.top_basis(self.k)
        return random_basis(svd.hidden, self.k, int(self.seed or 0))


def conditions(
    d: int, ks: Sequence[int], betas: Sequence[float], n_random: int, seed: int = 0
) -> list[Condition]:
    """Every (kind, k, β) of the sweep; ``n_random`` random subspaces per (k, β)."""
    out: list[Condition] = []
    for k in ks:
        for beta in betas:
            out += [Condition("null", k, beta), Condition("top", k, beta)]
            out += [Condition("random", k, beta, seed + i) for i in range(n_random)]
    return out


@dataclass
class NullspaceResult:
    """``ablation``: one row per (condition, layer); ``share``: one row per (layer, kind)."""

    ablation: pl.DataFrame
    share: pl.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AblationLens:
    """What the ablation pass needs: the answer lens, and the whole W_U (V, d) float32 with its
    bias for the option mass (the full-vocabulary probability of the answer tokens)."""

    answer: AnswerLens
    w_u: NDArray[np.float32]
    bias: NDArray[np.float32] | None

    @classmethod
    def of(cls, ds: xr.Dataset) -> AblationLens:
        w_u = np.asarray(ds["W_U"].values, np.float32)
        bias = np.asarray(ds["lm_head_bias"].values, np.float32) if "lm_head_bias" in ds else None
        return cls(AnswerLens.checked(ds), w_u, bias)

    def answer_logits(self, h: NDArray[np.float64]) -> NDArray[np.float64]:
        """(..., d) -> (..., K) logit-lens answer logits."""
        return self.answer.logits(h)

    def option_mass(self, h: NDArray[np.float64], mask: NDArray[np.bool_]) -> NDArray[np.float64]:
        """Full-vocabulary probability of the present answer tokens: h (m, d) -> (m,)."""
        if h.shape[0] == 0:
            return np.zeros(0)
        spec = self.answer.spec
        lse, _ = vocab_lse_entropy(final_norm(h, spec), self.w_u, self.bias, spec.softcap)
        return np.where(mask, np.exp(self.answer_logits(h) - lse[:, None]), 0.0).sum(axis=-1)


def _share_rows(
    h: NDArray[np.float64], layer: int, svd: UnembedSVD, k: int
) -> list[dict[str, Any]]:
    rows = []
    for kind, basis in (("null", svd.null_basis(k)), ("top", svd.top_basis(k))):
        sh = subspace_share(h, basis)
        q10, q50, q90 = np.quantile(sh, [0.1, 0.5, 0.9])
        rows.append(
            {
                "layer": layer,
                "kind": kind,
                "k": k,
                "share_mean": float(sh.mean()),
                "share_median": float(q50),
                "share_q10": float(q10),
                "share_q90": float(q90),
                "random_expected": float(np.sqrt(k / svd.hidden)),
            }
        )
    return rows


MECHANISM = ("removed", "logit_change", "logit_gain", "norm_ratio")
MASS = ("option_mass", "option_mass_delta", "option_mass_delta_lo", "option_mass_delta_hi")


def _mechanism(
    h: NDArray[np.float64],
    h2: NDArray[np.float64],
    svd: UnembedSVD,
    lens: AblationLens,
    mask: NDArray[np.bool_],
    vocab: tuple[NDArray[np.intp], NDArray[np.float64]] | None,
    n_boot: int,
    seed: int,
) -> dict[str, float]:
    """Means over examples of MECHANISM (see the module docstring) for h (n, d) -> h2, and, for
    ``vocab`` = (rows, their option mass before), the option mass after with the paired interval
    of its change (nan when None)."""
    norm0 = np.maximum(np.linalg.norm(h, axis=-1), 1e-30)
    coords = h @ svd.r  # W̃x = U (s ⊙ Rᵀx), so ‖W̃x‖ = ‖s ⊙ Rᵀx‖ over the whole vocabulary
    logit0 = np.maximum(np.linalg.norm(coords * svd.s, axis=-1), 1e-30)
    moved = np.linalg.norm((h2 @ svd.r - coords) * svd.s, axis=-1) / logit0
    removed = np.linalg.norm(h2 - h, axis=-1) / norm0
    gain = moved[removed > 0] / removed[removed > 0]
    out = {
        "removed": float(removed.mean()),
        "logit_change": float(moved.mean()),
        "logit_gain": float(gain.mean()) if gain.size else float("nan"),
        "norm_ratio": float(np.mean(np.linalg.norm(h2, axis=-1) / norm0)),
    }
    out.update(dict.fromkeys(MASS, float("nan")))
    if vocab is not None:
        rows, m0 = vocab
        m1 = lens.option_mass(h2[rows], mask[rows])
        pt, lo, hi = mean_delta_ci(m0[None], m1[None], n_boot=n_boot, seed=seed)
        out.update(zip(MASS, (float(m1.mean()), pt[0], lo[0], hi[0])))
    return out


def run_nullspace(
    ds: xr.Dataset,
    svd: UnembedSVD,
    *,
    layers: Sequence[int] | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    betas: Sequence[float] = (0.0,),
    n_random: int = 3,
    seed: int = 0,
    n_bins: int = 10,
    n_boot: int = 200,
    vocab_examples: int = 32,
    vocab_layers: Sequence[int] | None = None,
) -> NullspaceResult:
    """Sweep ablations over ``layers`` (store depths; None = all) of an opened store.

    The option mass needs the full-vocabulary lens (2 V d flops per example), so it is computed
    for ``vocab_examples`` seeded examples, at ``vocab_layers`` (None: every 10th analysed depth
    and the last), for the null, top and first random subspace of each (k, β); nan elsewhere.
    """
    d = int(ds.sizes["hidden"])
    have, lay = _checked_layers(ds, svd, layers)
    ks = k_values(d, fractions, cap=svd.candidates)
    conds = conditions(d, ks, betas, n_random, seed)
    lens = AblationLens.of(ds)
    label = np.asarray(ds["label"].values, np.int64)
    mask = np.asarray(ds["choice_mask"].values, bool)
    n, k0 = label.size, default_k(d)
    rng = np.random.default_rng([seed, 0x70CAB])
    vrows = np.sort(rng.choice(n, min(n, vocab_examples), replace=False))
    vlay = set(lay[::10]) | {lay[-1]} if vocab_layers is None else set(vocab_layers)
    sweep = _sweep(ds, svd, lens, conds, have, lay, mask, vrows, vlay, n_boot=n_boot, seed=seed)
    kw = {"n_bins": n_bins, "n_boot": n_boot, "seed": seed}
    rows = _rows(sweep, conds, lay, label, mask, hidden=d, **kw)
    meta = {
        "ks": ks,
        "default_k": k0,
        "fractions": list(fractions),
        "betas": list(betas),
        "n_random": n_random,
        "seed": seed,
        "n_bins": n_bins,
        "n_boot": n_boot,
        "layers": lay,
        "vocab_layers": sorted(vlay & set(lay)),
        "vocab_examples": int(vrows.size),
        "hidden": d,
        "n_examples": n,
        "svd_cache": svd.path,
        "w_u_sha256": svd.w_u_sha256,
        "singular_values_smallest": svd.null_singular_values[-max(ks) :][::-1].tolist(),
        "norm_kind": svd.norm_kind,
        "exact_null_excluded": EXACT_NULL_NOTE if svd.n_exact_null else None,
        "singular_values_largest": svd.s[: max(ks)].tolist(),
    }
    return NullspaceResult(pl.DataFrame(rows), pl.DataFrame(sweep.share_rows), meta)


def _checked_layers(
    ds: xr.Dataset, svd: UnembedSVD, layers: Sequence[int] | None
) -> tuple[list[int], list[int]]:
    """(the store's depths, the depths to ablate); refuses an SVD of another model and depths
    the store lacks."""
    d = int(ds.sizes["hidden"])
    if svd.hidden != d:
        raise ValueError(f"the SVD has hidden size {svd.hidden}, the store {d}: not its model")
    have = [int(x) for x in ds["layer"].values]
    lay = have if layers is None else [int(x) for x in layers]
    missing = sorted(set(lay) - set(have))
    if missing:
        raise ValueError(f"layers {missing} are not in the store (depths 0..{have[-1]})")
    return have, lay


@dataclass
class _Sweep:
    """The answer logits before (``base``: (L, n, K)) and after each condition's ablation
    (``z``: (C, L, n, K)), the mechanism columns (``extra``: name -> (C, L)) and the share
    rows, for the depths ``lay`` in order."""

    base: NDArray[np.float64]
    z: NDArray[np.float64]
    extra: dict[str, NDArray[np.float64]]
    share_rows: list[dict[str, Any]]


def _sweep(
    ds: xr.Dataset,
    svd: UnembedSVD,
    lens: AblationLens,
    conds: list[Condition],
    have: list[int],
    lay: list[int],
    mask: NDArray[np.bool_],
    vrows: NDArray[np.int64],
    vlay: set[int],
    *,
    n_boot: int,
    seed: int,
) -> _Sweep:
    """One depth of residuals in memory at a time: every condition's ablation at it."""
    n, k0, n_opt = int(ds.sizes["example"]), default_k(svd.hidden), lens.answer.w.shape[0]
    bases = [c.basis(svd) for c in conds]
    with_mass = [c.seed in (None, seed) for c in conds]
    out = _Sweep(np.empty((len(lay), n, n_opt)), np.empty((len(conds), len(lay), n, n_opt)), {}, [])
    for j, layer in enumerate(lay):
        h = np.asarray(ds["resid"].isel(layer=have.index(layer)).values, np.float64)
        out.base[j] = lens.answer_logits(h)
        out.share_rows += _share_rows(h, layer, svd, k0)
        vocab = (vrows, lens.option_mass(h[vrows], mask[vrows])) if layer in vlay else None
        for c, (cond, b) in enumerate(zip(conds, bases)):
            h2 = ablate(h, b, cond.beta)
            out.z[c, j] = lens.answer_logits(h2)
            stats = _mechanism(
                h, h2, svd, lens, mask, vocab if with_mass[c] else None, n_boot, seed
            )
            for key, value in stats.items():
                out.extra.setdefault(key, np.full((len(conds), len(lay)), np.nan))[c, j] = value
    return out


def _rows(
    sweep: _Sweep,
    conds: list[Condition],
    lay: list[int],
    label: NDArray[np.int64],
    mask: NDArray[np.bool_],
    *,
    hidden: int,
    n_bins: int,
    n_boot: int,
    seed: int,
) -> list[dict[str, Any]]:
    """``ablation.csv``'s rows: per condition and depth, the paired changes of REPORTED, the
    ECE floors and the mechanism columns."""
    n = label.size
    uniforms = floor_uniforms(n, seed=seed)

    def floor(logits: NDArray[np.float64]) -> NDArray[np.float64]:
        conf = logit_terms(logits, label, mask)["mean_confidence"]
        return ece_floor_from_uniforms(conf, uniforms, n_bins)

    floor_base = floor(sweep.base)
    rows: list[dict[str, Any]] = []
    for c, cond in enumerate(conds):
        res = paired_deltas(
            sweep.base, sweep.z[c], label, mask, n_bins=n_bins, n_boot=n_boot, seed=seed
        )
        floors = floor(sweep.z[c])
        for j, layer in enumerate(lay):
            row: dict[str, Any] = {
                "condition": cond.name,
                "kind": cond.kind,
                "k": cond.k,
                "k_fraction": cond.k / hidden,
                "beta": cond.beta,
                "seed": -1 if cond.seed is None else cond.seed,
                "layer": layer,
                "n": n,
            }
            for m in REPORTED:
                r = res[m]
                row[f"{m}_base"], row[m], row[f"d_{m}"] = r["base"][j], r["new"][j], r["delta"][j]
                row[f"d_{m}_lo"], row[f"d_{m}_hi"] = r["delta_lo"][j], r["delta_hi"][j]
            row["ece_floor_base"], row["ece_floor"] = float(floor_base[j]), float(floors[j])
            row.update({key: float(v[c, j]) for key, v in sweep.extra.items()})
            rows.append(row)
    return rows
