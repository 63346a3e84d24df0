"""The minimum detectable effect and the verdicts of a steering table."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from analyze.interventions.direction import fit_direction
from analyze.interventions.steer import run_steering, steering_splits
from analyze.interventions.steer_data import StoreData
from analyze.interventions.steer_power import (
    MDE_FACTOR,
    Z_POWER,
    Z_TEST,
    mde,
    verdict,
    verdict_text,
)
from analyze.lens.store import open_store
from tests.analyze.interventions.formulas import softmax
from tests.analyze.interventions.planted import confidence_store


def test_constants_and_mde_of_an_interval():
    assert pytest.approx(norm.ppf(0.975), abs=1e-12) == Z_TEST
    assert pytest.approx(norm.ppf(0.80), abs=1e-12) == Z_POWER
    # an interval of half-width 1.96 SE: MDE = 2.80 SE
    se = 0.01
    assert mde(-Z_TEST * se, Z_TEST * se) == pytest.approx((Z_TEST + Z_POWER) * se, rel=1e-12)
    assert pytest.approx(0.7147, abs=1e-4) == MDE_FACTOR
    assert math.isnan(mde(float("nan"), 0.1))


def test_verdicts():
    row = {"d_nll": -0.02, "d_nll_lo": -0.03, "d_nll_hi": -0.01, "d_nll_mde": 0.014}
    assert verdict(row, "nll") == "improved"
    assert verdict_text(row, "nll") == "improved (-0.020 [-0.030, -0.010])"
    row = {"d_nll": 0.02, "d_nll_lo": 0.01, "d_nll_hi": 0.03}
    assert verdict(row, "nll") == "worse"
    acc = {"d_accuracy": 0.02, "d_accuracy_lo": 0.01, "d_accuracy_hi": 0.03}
    assert verdict(acc, "accuracy") == "improved"  # larger is better for accuracy
    null = {"d_ece": 0.001, "d_ece_lo": -0.006, "d_ece_hi": 0.008, "d_ece_mde": 0.010}
    assert verdict(null, "ece") == "no effect"
    assert verdict_text(null, "ece") == "no effect (+0.001 [-0.006, +0.008]; MDE 0.010)"
    same = {"d_accuracy": 0.0, "d_accuracy_lo": 0.0, "d_accuracy_hi": 0.0, "d_accuracy_mde": 0.0}
    assert (
        verdict(same, "accuracy") == "no effect" and verdict_text(same, "accuracy") == "unchanged"
    )
    kept = {"d_nll": 0.0, "d_nll_lo": 0.0, "d_nll_hi": 0.0, "d_nll_mde": 0.0123}
    assert verdict_text(kept, "nll") == "unchanged (MDE 0.012)"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    ds = open_store(confidence_store(tmp_path_factory.mktemp("power") / "s.zarr", n=800))
    d = fit_direction(ds, estimator="pca", category="humanities", n_boot=0)
    return ds, d, run_steering(ds, d, n_random=0, n_boot=2000, seed=3)


def test_mde_of_a_mean_metric_is_2_8_sd_over_sqrt_n(run):
    """Independent: for NLL and Brier (means over examples) the SE of the paired change is
    sd(per-example change) / √n; MDE = (z_0.975 + z_0.8) · SE, within bootstrap noise."""
    ds, d, res = run
    data = StoreData.of(ds)
    test = steering_splits(data, d, 0.5, 3).test
    row = res.table.filter(res.table["method"] == "direction").row(0, named=True)
    alpha, last = res.meta["chosen"]["direction"], data.layer
    assert alpha != 0
    h = data.h[test]
    p0 = softmax(data.lens.logits(h))
    p1 = softmax(data.lens.logits(h + alpha * d.scale_at(last) * d.at(last)))
    lab = data.label[test]
    onehot = np.eye(4)[lab]
    per = {
        "nll": -np.log(p1[np.arange(lab.size), lab]) + np.log(p0[np.arange(lab.size), lab]),
        "brier": ((p1 - onehot) ** 2).sum(1) - ((p0 - onehot) ** 2).sum(1),
    }
    for k, x in per.items():
        expected = (Z_TEST + Z_POWER) * x.std() / np.sqrt(x.size)
        assert row[f"d_{k}_mde"] == pytest.approx(expected, rel=0.08), k
        assert row[f"d_{k}"] == pytest.approx(x.mean(), abs=1e-12), k
    assert row["mde_param"] == alpha


def test_a_neutral_choice_reports_the_mde_of_its_nearest_grid_value(run):
    """On the overconfident store, shrinking N_k (β < 1) makes the lens more confident, so the
    null-space control keeps β = 1 (no change, no interval); its MDE is that of the nearest β
    (0.5), measured on the same test examples."""
    ds, d, _ = run
    from analyze.interventions.svd import unembed_svd

    res = run_steering(
        ds, d, n_random=0, n_boot=200, svd=unembed_svd(ds, cache=False), betas=[0.0, 0.5]
    )
    null = res.table.filter(res.table["method"] == "nullspace").row(0, named=True)
    assert res.meta["chosen"]["nullspace"] == 1.0 and res.meta["power_param"]["nullspace"] == 0.5
    assert null["d_nll"] == 0 and null["d_nll_lo"] == 0 and null["d_nll_hi"] == 0
    assert null["mde_param"] == 0.5 and null["d_nll_mde"] > 0
    assert verdict(null, "nll") == "no effect"
    assert verdict_text(null, "nll") == f"unchanged (MDE {null['d_nll_mde']:.3f})"
    none = res.table.row(0, named=True)
    assert math.isnan(none["d_nll_mde"]) and math.isnan(none["mde_param"])
