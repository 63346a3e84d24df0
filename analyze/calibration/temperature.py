"""Temperature scaling (Guo et al. 2017): one temperature per layer fitted by minimum NLL.

``fit_temperature``: one layer, a bounded scalar search on log T; ``fit_temperatures``: every
layer at once (a safeguarded Newton iteration on 1/T); ``temperature_columns``: fitted on one
split of the examples, measured on the other (the columns of ``layers.csv``).
Shapes: L layers, n examples, K options.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analyze.calibration._binning import bin_sums, ece_from_sums
from analyze.calibration._checks import as_label, as_mask, as_scores
from analyze.calibration._probs import answer_probs, masked_logits, nll_terms

TEMPERATURE_BOUNDS = (0.05, 20.0)


def _mean_nll_at(z: NDArray[np.float64], label: NDArray[np.intp], temperature: float) -> float:
    """Mean NLL of softmax(z / T); z (n, K) with -inf at absent options, which exp sends to 0."""
    s = z / temperature
    s_max = s.max(axis=-1)
    log_norm = s_max + np.log(np.exp(s - s_max[:, None]).sum(axis=-1))
    return float((log_norm - s[np.arange(z.shape[0]), label]).mean())


def fit_temperature(
    logits: ArrayLike, label: ArrayLike, choice_mask: ArrayLike | None = None
) -> float:
    """Temperature T > 0 minimising the mean NLL of softmax(logits / T) (Guo et al. 2017).

    logits: (n, K); label: (n,); choice_mask: (n, K). The NLL is convex in 1/T, hence unimodal in
    log T, so a bounded scalar search on log T over TEMPERATURE_BOUNDS = [0.05, 20] finds the
    global minimum there (the bound itself when the optimum lies outside).
    """
    from scipy.optimize import minimize_scalar  # scipy import is slow; only needed here

    z = as_scores(logits, "logits")
    if z.ndim != 2:
        raise ValueError(f"logits must have shape (n, K), got {z.shape}")
    n, k = z.shape
    mask = as_mask(choice_mask, n, k)
    lab = as_label(label, n, k, mask)
    z = masked_logits(z, mask)
    lo, hi = np.log(TEMPERATURE_BOUNDS)
    res = minimize_scalar(
        lambda log_t: _mean_nll_at(z, lab, float(np.exp(log_t))),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(res.x))


def fit_temperatures(
    z: NDArray[np.float64], label: NDArray[Any], mask: NDArray[np.bool_] | None = None
) -> NDArray[np.float64]:
    """``fit_temperature`` for every layer at once: z (L, n, K) -> T (L,).

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

    t_lo, t_hi = TEMPERATURE_BOUNDS
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
    at_bound = np.isin(np.round(temps, 3), np.round(TEMPERATURE_BOUNDS, 3))
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
