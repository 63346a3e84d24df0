"""The weight-only neuron scan: logit variance against the (vocab x neuron) product itself."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from analyze.interventions import svd as S
from analyze.interventions.neuron_scan import candidates, matched_controls, roles, weight_scan
from layercal.lens import NormSpec


@pytest.mark.parametrize("kind", ["rmsnorm", "layernorm"])
def test_scan_against_the_direct_product(kind):
    rng = np.random.default_rng(3)
    v, d, neurons = 50, 10, 7
    w_u = rng.normal(size=(v, d))
    spec = NormSpec(kind, rng.normal(1, 0.3, d), None if kind == "rmsnorm" else np.zeros(d), 1e-5)
    w_tilde = S.effective_unembedding(w_u, spec)
    s, r = S.svd_of(w_tilde, null=S.exact_null(kind, d))
    svd = S.UnembedSVD(s, r, "x", "y", kind)
    w_out = rng.normal(size=(neurons, d)) * rng.uniform(0.5, 3, (neurons, 1))
    scan = weight_scan(w_out, svd, v, k=2)
    direct = w_u * np.asarray(spec.weight)  # W_U diag(γ), no centring of the vocabulary
    for i in range(neurons):
        w = w_out[i] - w_out[i].mean() if kind == "layernorm" else w_out[i]
        var = np.var(direct @ w)  # over the vocabulary, ddof 0
        assert scan["logit_var"][i] == pytest.approx(var, rel=1e-9)
        assert scan["norm"][i] == pytest.approx(np.linalg.norm(w_out[i]), rel=1e-12)
        assert scan["logit_var_unit"][i] == pytest.approx(var / np.sum(w_out[i] ** 2), rel=1e-9)
        assert scan["null_share"][i] == pytest.approx(float(svd.null_share(w_out[i], 2)))
    with pytest.raises(ValueError, match="hidden size 10"):
        weight_scan(w_out[:, :4], svd, v)


def test_candidates_controls_and_roles():
    scan = pl.DataFrame(
        {
            "neuron": np.arange(8),
            "norm": [1.0, 9.0, 8.0, 1.1, 7.0, 0.9, 8.5, 1.2],
            "logit_var_unit": [0.1, 0.5, 0.2, 0.3, 0.01, 0.4, 0.05, 0.6],
        }
    )
    # top half by norm: 1, 2, 4, 6 -> by logit_var_unit: 4, 6, 2, 1
    assert candidates(scan, 3, norm_quantile=0.5) == [4, 6, 2]
    assert candidates(scan, 10, norm_quantile=0.5) == [4, 6, 2, 1]
    with pytest.raises(ValueError, match="norm_quantile"):
        candidates(scan, 3, norm_quantile=1.0)
    ctrl = matched_controls(scan, [6, 2], n_controls=1, pool_size=1)
    assert ctrl == {6: [1], 2: [4]}  # nearest in norm among non-candidates, each used once
    two = matched_controls(scan, [1], n_controls=2, seed=5, pool_size=3)
    assert set(two[1]) < {6, 2, 4}  # drawn from the 3 nearest
    assert two == matched_controls(scan, [1], n_controls=2, seed=5, pool_size=3)  # seeded
    assert len(matched_controls(scan, [1], n_controls=3)[1]) == 3
    r = roles(scan, [6, 2], ctrl)
    assert r["role"].to_list() == ["", "control", "candidate", "", "control", "", "candidate", ""]
    assert r["candidate_rank"].to_list() == [None, None, 2, None, None, None, 1, None]
    assert r["control_of"].to_list() == [None, 6, None, None, 2, None, None, None]
