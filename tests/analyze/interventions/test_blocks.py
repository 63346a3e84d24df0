"""Per-block null-space writes: shares by hand, the ablation against an independent formula."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.calibration import ece
from analyze.interventions import svd as S
from analyze.interventions.blocks import run_blocks, without_write, write_shares
from analyze.lens.store import norm_spec_of, open_store
from layercal.lens import lens_logits
from tests.analyze.interventions.planted import random_store


def test_write_shares_by_hand():
    basis = np.eye(4)[:, :2]  # N = span(e1, e2)
    delta = np.array([[3.0, 0.0, 4.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    h_last = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0]])
    s = write_shares(delta, h_last, basis)
    np.testing.assert_allclose(s["null_share"], [0.6, 0.0, np.sqrt(2) / 2])
    np.testing.assert_allclose(s["row_share"], [0.8, 0.0, np.sqrt(2) / 2])
    np.testing.assert_allclose(s["delta_rel"], [5.0, 0.0, 1.0])
    # ⟨BᵀΔ, Bᵀh⟩ / ‖Bᵀh‖²: 3·1/1, 0, 1·2/4
    np.testing.assert_allclose(s["null_contribution"], [3.0, 0.0, 0.5])
    np.testing.assert_allclose(without_write(h_last, delta, basis)[0], [-2.0, 0.0, 0.0, 0.0])


@pytest.mark.parametrize("kind", ["rmsnorm", "layernorm"])
def test_run_blocks_against_an_independent_formula(tmp_path, kind):
    ds = open_store(random_store(tmp_path / "s.zarr", n=96, depth=5, hidden=16, kind=kind))
    svd = S.unembed_svd(ds, cache=False)
    res = run_blocks(ds, svd, k=3, n_boot=50, n_random=2, seed=1)
    t = res.table
    assert t["depth"].to_list() == [0, 1, 2, 3] and t["layer"].to_list() == [1, 2, 3, 4]
    resid = np.asarray(ds["resid"].values, np.float64)
    label = ds["label"].values.astype(int)
    ids = ds["answer_token_ids"].values
    spec, w = norm_spec_of(ds), np.asarray(ds["W_U"].values)[ids]
    b = svd.null_basis(3)

    def ece_conf_acc(h):
        z = lens_logits(h, w, spec)
        p = np.exp(z - z.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        conf, correct = p.max(-1), (p.argmax(-1) == label).astype(float)
        nll = -np.log(p[np.arange(label.size), label])
        return ece(conf, correct, 10), conf.mean(), correct.mean(), nll.mean()

    base = ece_conf_acc(resid[:, -1])
    for row in t.iter_rows(named=True):
        delta = resid[:, row["depth"] + 1] - resid[:, row["depth"]]
        proj = delta @ b @ b.T
        new = ece_conf_acc(resid[:, -1] - proj)
        assert row["d_ece"] == pytest.approx(new[0] - base[0], abs=1e-12)
        assert row["d_confidence"] == pytest.approx(new[1] - base[1], abs=1e-12)
        assert row["d_accuracy"] == pytest.approx(new[2] - base[2], abs=1e-12)
        assert row["d_nll"] == pytest.approx(new[3] - base[3], abs=1e-12)
        assert row["d_ece_lo"] <= row["d_ece"] <= row["d_ece_hi"]
        share = np.linalg.norm(delta @ b, axis=1) / np.linalg.norm(delta, axis=1)
        assert row["null_share"] == pytest.approx(share.mean(), rel=1e-12)
        assert row["null_share"] ** 2 <= 1 and row["row_share"] < 1
        assert row["random_expected"] == pytest.approx(np.sqrt(3 / 16))
    # the null-space content of the last residual is the embedding's plus every block's
    total = t["null_contribution"].sum() + res.meta["embedding_null_contribution"]
    assert total == pytest.approx(1.0, abs=1e-9)
    assert res.meta["last"]["ece"] == pytest.approx(base[0], abs=1e-12)


def test_k0_removes_nothing(tmp_path):
    ds = open_store(random_store(tmp_path / "s.zarr", n=64, depth=3))
    res = run_blocks(ds, S.unembed_svd(ds, cache=False), k=0, n_boot=10, n_random=0)
    for m in ("ece", "nll", "confidence", "accuracy"):
        assert res.table[f"d_{m}"].to_list() == [0.0, 0.0]
    assert res.table["null_share"].to_list() == [0.0, 0.0]
    assert np.isnan(res.table["random_d_ece"].to_numpy()).all()
