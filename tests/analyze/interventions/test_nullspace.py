"""Null-space ablations of stored residuals (synthetic, and the real SmolLM2)."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.interventions import svd as S
from analyze.interventions.nullspace import ablate, k_values, random_basis, run_nullspace
from analyze.lens.store import open_store
from tests.analyze.interventions.planted import random_store


def test_k0_and_beta1_are_exact_noops():
    rng = np.random.default_rng(0)
    h = rng.normal(size=(5, 3, 8))
    assert ablate(h, np.zeros((8, 0)), 0.0) is h
    b = random_basis(8, 3, seed=1)
    assert ablate(h, b, 1.0) is h
    np.testing.assert_allclose(b.T @ b, np.eye(3), atol=1e-12)
    out = ablate(h, b, 0.0)
    np.testing.assert_allclose(out @ b, 0, atol=1e-12)  # projected out
    np.testing.assert_allclose(ablate(h, b, 2.0) @ b, 2 * (h @ b), atol=1e-12)
    np.testing.assert_allclose(out - h, -(h @ b) @ b.T, atol=1e-12)
    assert k_values(576, [0.0001, 0.01, 0.01, 0.5, 2.0]) == [1, 6, 288, 576]


def test_run_nullspace_synthetic_shapes_and_controls(tmp_path):
    ds = open_store(random_store(tmp_path / "s.zarr", kind="layernorm"))
    svd = S.unembed_svd(ds, cache=False)
    res = run_nullspace(ds, svd, fractions=[0.1, 0.5], n_random=2, n_boot=20, vocab_examples=8)
    ks = res.meta["ks"]
    assert ks == [2, 8]
    assert res.ablation.height == len(ks) * 4 * 4  # (null, top, 2 random) x k x 4 layers
    assert set(res.ablation["kind"]) == {"null", "top", "random"}
    assert (res.ablation["removed"] > 0).all()
    top = res.ablation.filter(res.ablation["kind"] == "top")
    null = res.ablation.filter(res.ablation["kind"] == "null")
    assert (top["logit_gain"].mean() or 0) > (null["logit_gain"].mean() or 0)
    assert res.share.height == 4 * 2


def test_endpoints_and_ece_floor_of_a_row_by_the_formula(tmp_path):
    """Brier and NLL of an ablated row (with its paired change) by the formula, and the ECE
    floor of its confidences before and after (the endpoints' function, same seed)."""
    from analyze.calibration import ece_floor
    from layercal.lens import lens_logits
    from tests.analyze.interventions.formulas import metrics_formula, softmax

    ds = open_store(random_store(tmp_path / "s.zarr"))
    svd = S.unembed_svd(ds, cache=False)
    res = run_nullspace(ds, svd, layers=[3], fractions=[0.25], n_random=0, n_boot=20, seed=4)
    row = res.ablation.filter(res.ablation["kind"] == "null").row(0, named=True)
    h = np.asarray(ds["resid"].isel(layer=3).values, np.float64)
    w = np.asarray(ds["W_U"].values)[np.asarray(ds["answer_token_ids"].values)]
    import zarr

    from layercal import format as fmt

    spec = fmt.norm_spec(zarr.open_group(str(tmp_path / "s.zarr"), mode="r"))
    label = np.asarray(ds["label"].values)
    z0 = lens_logits(h, w, spec)
    z1 = lens_logits(ablate(h, svd.null_basis(row["k"]), 0.0), w, spec)
    m0, m1 = metrics_formula(z0, label), metrics_formula(z1, label)
    for k in ("brier", "nll"):
        assert row[f"{k}_base"] == pytest.approx(m0[k], abs=1e-9)
        assert row[k] == pytest.approx(m1[k], abs=1e-9)
        assert row[f"d_{k}"] == pytest.approx(m1[k] - m0[k], abs=1e-9)
        assert row[f"d_{k}_lo"] <= row[f"d_{k}"] <= row[f"d_{k}_hi"]
    for key, z in (("ece_floor_base", z0), ("ece_floor", z1)):
        conf = softmax(z).max(axis=1)
        assert row[key] == pytest.approx(float(ece_floor(conf, 10, seed=4)), abs=1e-12)


@pytest.fixture(scope="module")
def smol_ds(smol_store_path):
    return open_store(smol_store_path)


@pytest.mark.slow
def test_null_space_moves_the_norm_not_the_logits_smollm2(smol_ds):
    """Projecting out N_k removes much of the residual but changes the (centred, full-vocabulary)
    logits far less per unit removed than random or top-k subspaces; the norm changes a lot."""
    svd = S.unembed_svd(smol_ds, cache_dir=S.user_cache_dir())
    last = int(smol_ds.sizes["layer"]) - 1
    res = run_nullspace(
        smol_ds, svd, layers=[last], fractions=[0.01], n_random=2, n_boot=50, vocab_examples=4
    )
    row = {r["kind"] + str(r["seed"]): r for r in res.ablation.iter_rows(named=True)}
    null, top = row["null-1"], row["top-1"]
    rand = [row["random0"], row["random1"]]
    assert null["logit_gain"] < 0.5 * min(r["logit_gain"] for r in rand)
    assert null["logit_gain"] < 0.1 * top["logit_gain"]
    assert 1 - null["norm_ratio"] > 0.1  # the norm drops by over 10%
    assert all(1 - r["norm_ratio"] < 0.02 for r in rand + [top])
    share = res.share.filter(res.share["kind"] == "null")["share_mean"][0]
    assert share > 3 * res.share["random_expected"][0]  # the residual lives in N_k
