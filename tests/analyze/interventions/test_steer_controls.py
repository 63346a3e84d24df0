"""The controls: random directions with the direction's null-space share, temperature by the
rule, direction+temperature, and the contrasts with temperature alone."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.calibration import fit_temperature
from analyze.interventions.direction import fit_direction
from analyze.interventions.steer import run_steering, steering_splits
from analyze.interventions.steer_controls import matched_direction, random_direction
from analyze.interventions.steer_data import StoreData
from analyze.interventions.svd import unembed_svd
from analyze.lens.store import open_store
from tests.analyze.interventions.formulas import metrics_formula
from tests.analyze.interventions.planted import confidence_store


def test_matched_directions_have_the_directions_null_space_share():
    rng = np.random.default_rng(0)
    d, k = 200, 8
    basis, _ = np.linalg.qr(rng.normal(size=(d, k)))
    v = basis @ rng.normal(size=k) * 3 + rng.normal(size=d)  # a large share in span(basis)
    v /= np.linalg.norm(v)
    share = np.linalg.norm(basis.T @ v)
    us = [matched_direction(v, basis, s) for s in range(6)]
    for u in us:
        assert np.linalg.norm(u) == pytest.approx(1, abs=1e-12)
        assert np.linalg.norm(basis.T @ u) == pytest.approx(share, abs=1e-12)
        assert abs(u @ v) < 0.9  # not the direction itself
    assert len({round(float(u[0]), 12) for u in us}) == 6  # seeded, distinct
    # isotropic ones have about sqrt(k/d) = 0.2 instead
    iso = np.mean([np.linalg.norm(basis.T @ random_direction(d, s)) for s in range(200)])
    assert iso == pytest.approx(np.sqrt(k / d), abs=0.03) and share > 0.5


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    ds = open_store(confidence_store(tmp_path_factory.mktemp("controls") / "s.zarr", n=800))
    d = fit_direction(ds, estimator="pca", category="humanities", n_boot=0)
    res = run_steering(ds, d, n_random=5, n_boot=300, svd=unembed_svd(ds, cache=False))
    return ds, d, res


def test_random_controls_match_the_share_and_are_named(run):
    ds, d, res = run
    svd = unembed_svd(ds, cache=False)
    names = res.table["method"].to_list()
    assert [n for n in names if n.startswith("random")] == [f"random-{i}" for i in range(5)]
    rnd = res.meta["random_directions"]
    assert rnd["kind"] == "null_share_matched" and rnd["k"] == 1
    assert rnd["null_space_share"] == pytest.approx(float(svd.null_share(d.vector, 1)), abs=1e-9)


def test_temperature_and_direction_temperature_by_the_formula(run):
    ds, d, res = run
    data = StoreData.of(ds)
    sp = steering_splits(data, d, 0.5, 0)
    last = data.layer
    z0 = {k: data.lens.logits(data.h[r]) for k, r in sp.named()}
    t = fit_temperature(z0["dev"], data.label[sp.dev], data.mask[sp.dev])
    assert res.meta["chosen"]["temperature"] == pytest.approx(t, rel=1e-9)
    alpha = res.meta["chosen"]["direction"]
    assert res.meta["combined"]["alpha"] == alpha
    shift = alpha * d.scale_at(last) * d.at(last)
    z1 = {k: data.lens.logits(data.h[r] + shift) for k, r in sp.named()}
    t2 = fit_temperature(z1["dev"], data.label[sp.dev], data.mask[sp.dev])
    assert res.meta["chosen"]["direction+temperature"] == pytest.approx(t2, rel=1e-9)
    lab = data.label[sp.test]
    row = res.table.filter(res.table["method"] == "direction+temperature").row(0, named=True)
    m = metrics_formula(z1["test"] / t2, lab)
    for k in ("accuracy", "ece", "brier", "nll"):
        assert row[k] == pytest.approx(m[k], abs=1e-9), k


def test_contrasts_with_temperature_by_the_formula(run):
    ds, d, res = run
    data = StoreData.of(ds)
    sp = steering_splits(data, d, 0.5, 0)
    lab, last = data.label[sp.test], data.layer
    z0 = data.lens.logits(data.h[sp.test])
    t, alpha = res.meta["chosen"]["temperature"], res.meta["chosen"]["direction"]
    z1 = data.lens.logits(data.h[sp.test] + alpha * d.scale_at(last) * d.at(last))
    t2 = res.meta["chosen"]["direction+temperature"]
    ref = metrics_formula(z0 / t, lab)
    c = res.contrasts
    assert c["method"].to_list() == ["direction", "direction+temperature"]
    assert c["reference"].to_list() == ["temperature", "temperature"]
    for j, z in enumerate((z1, z1 / t2)):
        row = c.row(j, named=True)
        m = metrics_formula(z, lab)
        for k in ("ece", "brier", "nll"):
            assert row[f"d_{k}"] == pytest.approx(m[k] - ref[k], abs=1e-9), k
            assert row[f"{k}_reference"] == pytest.approx(ref[k], abs=1e-9)
            assert row[f"d_{k}_lo"] <= row[f"d_{k}"] <= row[f"d_{k}_hi"]
            assert row[f"d_{k}_mde"] > 0
