"""The tuned lens (Belrose et al. 2023) fitted from a store with scipy's L-BFGS.

Per depth and fold an affine translator h -> h + (h / sigma) A + b (sigma: the per-coordinate
standard deviation of the training residuals, a diagonal preconditioner: residual coordinates
differ in scale by orders of magnitude), initialised at A = 0, b = 0 (the logit lens), minimises
the mean KL(final || lens) on the fold's token set (:mod:`.tokens`) with an analytic gradient
through the stored final norm, unembedding rows and soft-cap. Regularisation is early stopping
chosen by inner validation: a seeded VALIDATION_FRACTION of the fold's training examples is held
out, L-BFGS runs on the rest, and the iterate of least validation KL is kept (it stops after
PATIENCE iterations without improvement, or at ``max_iter``). The artifact stores B =
diag(1 / sigma) A, so it is applied like any affine translator. Labels are never read.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

from analyze.lens.answer import AnswerLens
from analyze.lens.fitted.tokens import set_log_probs

VALIDATION_FRACTION = 0.2
PATIENCE = 10
DEFAULT_MAX_ITER = 100
HISTORY = 5  # L-BFGS correction pairs (memory: 2 x HISTORY x (d^2 + d) doubles)


@dataclass(frozen=True)
class TunedFit:
    """One fold's translator at one depth: ``weight`` (d, d) = B, ``bias`` (d,); ``iterations``
    run, ``best_iteration`` kept (0 = the identity), train and validation KL at that iterate."""

    weight: NDArray[np.float32]
    bias: NDArray[np.float32]
    iterations: int
    best_iteration: int
    train_kl: float
    validation_kl: float


def kl_and_grad(
    theta: NDArray[np.float64],
    xs: NDArray[np.float32],
    x: NDArray[np.float32],
    log_p: NDArray[np.float64],
    out: AnswerLens,
    grad: bool = True,
) -> tuple[float, NDArray[np.float64] | None]:
    """Mean KL(p || softmax(lens)) and its gradient in theta = [A.ravel(), b].

    ``xs``: (n, d) residuals divided by sigma, ``x``: (n, d) residuals, ``log_p``: (n, S) final
    log-probabilities on the token set, ``out``: the readout on that set (final norm, W_S, b_S).
    """
    n, d = x.shape
    a = theta[: d * d].reshape(d, d).astype(np.float32)
    h = x + xs @ a + theta[d * d :].astype(np.float32)
    spec = out.spec
    u = h - h.mean(axis=1, keepdims=True) if spec.kind == "layernorm" else h
    r = np.sqrt(np.mean(np.square(u, dtype=np.float64), axis=1) + spec.eps)  # (n,)
    y = u / r[:, None].astype(np.float32)
    w_norm = (np.asarray(spec.weight, np.float64) + spec.offset).astype(np.float32)
    normed = y * w_norm
    if spec.bias is not None:
        normed = normed + np.asarray(spec.bias, np.float32)
    z = (normed @ out.w.T).astype(np.float64)
    if out.b is not None:
        z += out.b
    if spec.softcap is not None:
        z = spec.softcap * np.tanh(z / spec.softcap)
    log_q = set_log_probs(z)
    p = np.exp(log_p)
    loss = float(np.sum(p * (log_p - log_q)) / n)
    if not grad:
        return loss, None
    dz = (np.exp(log_q) - p) / n
    if spec.softcap is not None:
        dz *= 1.0 - (z / spec.softcap) ** 2
    dy = (dz.astype(np.float32) @ out.w) * w_norm
    du = (dy - y * np.mean(dy * y, axis=1, keepdims=True)) / r[:, None].astype(np.float32)
    if spec.kind == "layernorm":
        du -= du.mean(axis=1, keepdims=True)
    g = np.concatenate([(xs.T @ du).ravel(), du.sum(axis=0)]).astype(np.float64)
    return loss, g


class _Stop(Exception):
    """Raised from the L-BFGS callback when validation has not improved for PATIENCE steps."""


def fit_tuned(
    x: NDArray[np.floating[Any]],
    log_p: NDArray[np.float64],
    out: AnswerLens,
    *,
    seed: int,
    max_iter: int = DEFAULT_MAX_ITER,
) -> TunedFit:
    """Fit one translator on the training residuals ``x`` (n, d) against the final
    log-probabilities ``log_p`` (n, S) on the readout ``out``'s token set."""
    x = np.asarray(x, np.float32)
    n, d = x.shape
    if n < 2:  # nothing to fit on and validate with: the identity
        zero = np.zeros((d, d), np.float32)
        return TunedFit(zero, np.zeros(d, np.float32), 0, 0, float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    val = np.zeros(n, bool)
    val[rng.permutation(n)[: max(1, round(VALIDATION_FRACTION * n))]] = True
    sigma = x[~val].std(axis=0).astype(np.float32)
    sigma = np.where(sigma > 0, sigma, 1.0).astype(np.float32)
    fit_x, val_x = x[~val], x[val]
    fit_xs, val_xs = fit_x / sigma, val_x / sigma
    theta0 = np.zeros(d * d + d)
    state: dict[str, Any] = {"best": kl_and_grad(theta0, val_xs, val_x, log_p[val], out, False)[0]}
    state.update(best_theta=theta0, best_it=0, it=0)

    def watch(theta: NDArray[np.float64]) -> None:
        state["it"] += 1
        kl = kl_and_grad(theta, val_xs, val_x, log_p[val], out, False)[0]
        if kl < state["best"]:
            state.update(best=kl, best_theta=theta.copy(), best_it=state["it"])
        elif state["it"] - state["best_it"] >= PATIENCE:
            raise _Stop

    with contextlib.suppress(_Stop):
        minimize(
            kl_and_grad,
            theta0,
            args=(fit_xs, fit_x, log_p[~val], out),
            jac=True,
            method="L-BFGS-B",
            callback=watch,
            options={"maxiter": max_iter, "maxcor": HISTORY, "ftol": 1e-12, "gtol": 1e-9},
        )
    theta = state["best_theta"]
    train = kl_and_grad(theta, fit_xs, fit_x, log_p[~val], out, False)[0]
    a = theta[: d * d].reshape(d, d)
    return TunedFit(
        weight=(a / sigma[:, None]).astype(np.float32),
        bias=theta[d * d :].astype(np.float32),
        iterations=int(state["it"]),
        best_iteration=int(state["best_it"]),
        train_kl=float(train),
        validation_kl=float(state["best"]),
    )
