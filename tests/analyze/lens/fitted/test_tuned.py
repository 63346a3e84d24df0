"""analyze/lens/fitted/tuned.py: the analytic gradient against finite differences (RMSNorm,
LayerNorm with bias, soft-cap), and a fit that moves the lens towards the final distribution."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.lens.answer import AnswerLens
from analyze.lens.fitted.tokens import set_log_probs
from analyze.lens.fitted.tuned import fit_tuned, kl_and_grad
from layercal.lens import NormSpec, lens_logits


def _readout(kind: str, d: int = 5, s: int = 7, softcap=None, seed: int = 0) -> AnswerLens:
    rng = np.random.default_rng(seed)
    bias = rng.normal(0, 0.1, d).astype(np.float32) if kind == "layernorm" else None
    spec = NormSpec(
        kind, (1 + 0.3 * rng.normal(size=d)).astype(np.float32), bias, 1e-5, 0.0, softcap
    )
    w = rng.normal(0, 1, (s, d)).astype(np.float32)
    return AnswerLens(spec, w, rng.normal(0, 0.2, s).astype(np.float32))


@pytest.mark.parametrize(
    ("kind", "softcap"), [("rmsnorm", None), ("layernorm", None), ("rmsnorm", 3.0)]
)
def test_gradient_equals_finite_differences(kind, softcap):
    rng = np.random.default_rng(1)
    out = _readout(kind, softcap=softcap)
    x = rng.normal(0, 2, (9, 5)).astype(np.float32)
    sigma = x.std(axis=0)
    log_p = set_log_probs(rng.normal(0, 2, (9, 7)))
    theta = rng.normal(0, 0.2, 30)
    loss, g = kl_and_grad(theta, x / sigma, x, log_p, out)
    # the loss is the mean KL of the reference formula applied to the translated residual
    a, b = theta[:25].reshape(5, 5), theta[25:]
    h = x + (x / sigma) @ a + b
    ref = set_log_probs(lens_logits(h, out.w, out.spec, out.b))
    assert loss == pytest.approx(float((np.exp(log_p) * (log_p - ref)).sum(1).mean()), rel=1e-4)
    eps = 1e-3
    num = np.empty_like(theta)
    for i in range(theta.size):
        up, dn = theta.copy(), theta.copy()
        up[i] += eps
        dn[i] -= eps
        num[i] = (
            kl_and_grad(up, x / sigma, x, log_p, out, False)[0]
            - kl_and_grad(dn, x / sigma, x, log_p, out, False)[0]
        ) / (2 * eps)
    np.testing.assert_allclose(g, num, rtol=2e-2, atol=2e-4)


def test_fit_brings_a_shifted_depth_to_the_final_distribution():
    rng = np.random.default_rng(2)
    out = _readout("rmsnorm", d=6, s=8)
    n = 300
    last = rng.normal(0, 1, (n, 6)).astype(np.float32)
    m = np.eye(6) + rng.normal(0, 0.5, (6, 6))
    x = (last @ np.linalg.inv(m) - 0.3).astype(np.float32)  # last = (x + 0.3) m
    log_p = set_log_probs(out.logits(last))
    fit = fit_tuned(x, log_p, out, seed=0, max_iter=200)
    before = float((np.exp(log_p) * (log_p - set_log_probs(out.logits(x)))).sum(1).mean())
    assert fit.best_iteration > 0 and fit.validation_kl < 0.1 * before
    lensed = out.logits(x + x @ fit.weight + fit.bias)
    after = float((np.exp(log_p) * (log_p - set_log_probs(lensed))).sum(1).mean())
    assert after < 0.1 * before


def test_no_improvement_keeps_the_identity():
    rng = np.random.default_rng(3)
    out = _readout("rmsnorm", d=4, s=6)
    x = rng.normal(0, 1, (60, 4)).astype(np.float32)
    fit = fit_tuned(x, set_log_probs(out.logits(x)), out, seed=0, max_iter=20)
    assert fit.best_iteration == 0 and not fit.weight.any() and not fit.bias.any()


def test_one_training_example_gives_the_identity():
    out = _readout("rmsnorm", d=4, s=6)
    x = np.ones((1, 4), np.float32)
    fit = fit_tuned(x, set_log_probs(out.logits(x)), out, seed=0)
    assert fit.iterations == 0 and not fit.weight.any() and np.isnan(fit.train_kl)
