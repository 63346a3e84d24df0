"""Neuron ablations from a store with the capture, against materialised residuals."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.calibration import ece
from analyze.interventions import svd as S
from analyze.interventions.neurons import NO_CAPTURE, resampled_ece, run_neurons
from analyze.lens.store import norm_spec_of, open_store
from layercal.lens import lens_logits
from tests.analyze.interventions.planted import ENTROPY_NEURON, capture_store, random_store


def _metrics(h, w, spec, label):
    z = lens_logits(h, w, spec)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    conf, correct = p.max(-1), (p.argmax(-1) == label).astype(float)
    nll = -np.log(p[np.arange(label.size), label])
    return {
        "ece": ece(conf, correct, 10),
        "confidence": conf.mean(),
        "nll": nll.mean(),
        "accuracy": correct.mean(),
    }


@pytest.mark.parametrize("kind", ["rmsnorm", "layernorm"])
def test_run_neurons_against_materialised_residuals(tmp_path, kind):
    ds = open_store(capture_store(tmp_path / "c.zarr", kind=kind))
    svd = S.unembed_svd(ds, cache=False)
    direction = np.random.default_rng(1).normal(size=24)
    res = run_neurons(
        ds,
        svd,
        n_candidates=4,
        norm_quantile=0.5,
        n_controls=2,
        top_n=(1, 3),
        direction=direction,
        n_boot=40,
        seed=2,
    )
    t = res.neurons
    assert t.height == 32 and t["neuron"].to_list() == list(range(32))
    resid = np.asarray(ds["resid"].values, np.float64)
    acts = np.asarray(ds["mlp_last"].values, np.float64)
    w_out = np.asarray(ds["w_out_last"].values, np.float64)
    label = ds["label"].values.astype(int)
    spec, w = norm_spec_of(ds), np.asarray(ds["W_U"].values)[ds["answer_token_ids"].values]
    h = resid[:, -1]
    base = _metrics(h, w, spec, label)
    for i in (0, ENTROPY_NEURON, 31):
        row = t.row(i, named=True)
        new = _metrics(h + (acts[:, i].mean() - acts[:, i])[:, None] * w_out[i], w, spec, label)
        for m in ("ece", "confidence", "nll", "accuracy"):
            assert row[f"d_{m}"] == pytest.approx(new[m] - base[m], abs=1e-9), (i, m)
        assert row["d_ece_lo"] <= row["d_ece"] <= row["d_ece_hi"]
        cos = w_out[i] @ direction / np.linalg.norm(w_out[i]) / np.linalg.norm(direction)
        assert row["direction_cosine"] == pytest.approx(cos, abs=1e-12)
    # the planted entropy neuron: largest norm, smallest logit variance, acts through the norm
    ent = t.row(ENTROPY_NEURON, named=True)
    assert ent["role"] == "candidate" and ent["candidate_rank"] == 1
    assert ent["null_share"] > 0.99 and ent["scale_mediated"] > 0.9
    assert abs(ent["direct_d_nll"]) < 0.1 * abs(ent["d_nll"])
    assert res.meta["candidates"][0] == ENTROPY_NEURON
    assert (t["role"] == "control").sum() == 8 and (t["role"] == "candidate").sum() == 4
    # sets: the whole MLP, against the residual without the MLP's deviation from its mean
    sets = {r["set"]: r for r in res.sets.iter_rows(named=True)}
    assert list(sets) == ["top-1", "controls-1", "top-3", "controls-3", "all"]
    h_all = h + (acts.mean(0) - acts) @ w_out
    new = _metrics(h_all, w, spec, label)
    prev = _metrics(resid[:, -2], w, spec, label)
    assert sets["all"]["d_ece"] == pytest.approx(new["ece"] - base["ece"], abs=1e-9)
    carried = (new["ece"] - base["ece"]) / (prev["ece"] - base["ece"])
    assert sets["all"]["carried"] == pytest.approx(carried, rel=1e-9)
    assert sets["all"]["carried_lo"] <= sets["all"]["carried_hi"]
    assert sets["top-1"]["d_ece"] == pytest.approx(ent["d_ece"], abs=1e-12)
    assert sets["top-1"]["neurons"] == str(ENTROPY_NEURON)
    bc = res.meta["block_change"]
    assert bc["d_ece"] == pytest.approx(base["ece"] - prev["ece"], abs=1e-12)


def test_resampled_ece_with_unit_weights_is_ece():
    rng = np.random.default_rng(0)
    z, label = rng.normal(size=(2, 50, 4)), rng.integers(0, 4, 50)
    got = resampled_ece(z, label, None, np.ones((1, 50)), 10)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    for g in range(2):
        want = ece(p[g].max(-1), (p[g].argmax(-1) == label).astype(float), 10)
        assert got[0, g] == pytest.approx(want, abs=1e-12)
    w = np.zeros((1, 50))
    w[0, :25] = 2.0  # the first 25 examples twice
    half = ece(p[0, :25].max(-1), (p[0, :25].argmax(-1) == label[:25]).astype(float), 10)
    assert resampled_ece(z[:1], label, None, w, 10)[0, 0] == pytest.approx(half, abs=1e-12)


def test_a_store_without_the_capture_is_refused_with_what_to_do(tmp_path):
    ds = open_store(random_store(tmp_path / "r.zarr"))
    with pytest.raises(ValueError, match="--capture mlp_last"):
        run_neurons(ds, S.unembed_svd(ds, cache=False))
    assert "blocks.csv needs no capture" in NO_CAPTURE
