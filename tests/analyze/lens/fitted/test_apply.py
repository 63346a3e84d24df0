"""analyze/lens/fitted/apply.py: a lens bound to a store, and every analysis read through it.

Cross-fitted reading (each example through its own fold's translator), the refusals (another
store without --transfer, another model even with it), transfer through the mean translator,
the last depth as the identity under every lens, and an infinite-penalty shortcut that is
exactly the logit lens in every table of ``analyze_store``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from polars.testing import assert_frame_equal
from scipy.special import logsumexp

from analyze.analysis import analyze_store
from analyze.lens.answer import AnswerLens
from analyze.lens.fitted import KINDS, LensError, fit_lens, load_lens
from analyze.lens.fitted.apply import TRANSFER
from analyze.lens.fitted.artifact import read_block
from analyze.lens.store import norm_spec_of, open_store
from analyze.lens.vocab import full_vocab_arrays, lens_pass
from layercal.lens import lens_logits
from tests.analyze.lens.fitted.planted import make_store, residuals

N, DEPTH, D = 160, 4, 8
FAST = {"top_k": 10, "max_iter": 10}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("apply")
    store = make_store(root / "s.zarr", resid=residuals(N, DEPTH, D, noise=0.3))
    lenses = {k: fit_lens(store, k, root / k, **FAST) for k in KINDS}
    return store, lenses


def _manual(ds, lens, fold_of):
    """Translated residuals written out: each example through its fold's arrays (or the mean)."""
    h = np.asarray(ds["resid"].values, np.float64)
    out = h.copy()
    k = lens.info["folds"]["k"]
    for i in range(h.shape[0]):
        folds = range(k) if fold_of[i] == TRANSFER else [fold_of[i]]
        for layer in range(DEPTH - 1):
            w = np.mean([read_block(lens.path / "weight.npy", (f, layer)) for f in folds], axis=0)
            b = np.mean([read_block(lens.path / "bias.npy", (f, layer)) for f in folds], axis=0)
            out[i, layer] = h[i, layer] + h[i, layer] @ w + b
    return out


@pytest.mark.parametrize("kind", ["shortcut", "tuned"])
def test_each_example_is_read_through_its_own_folds_translator(planted, kind):
    store, lenses = planted
    ds = open_store(store, chunks={"example": 64, "layer": 2})  # chunks across folds and depths
    bound = lenses[kind].bind(ds)
    assert not bound.transfer
    assert np.array_equal(bound.fold, lenses[kind].array("fold.npy"))
    lensed, scale = bound.lensed(ds)
    assert scale is None
    np.testing.assert_allclose(
        lensed["resid"].values, _manual(ds, lenses[kind], bound.fold), rtol=1e-5, atol=1e-5
    )


def test_temperature_lens_scales_the_logits_and_the_full_vocabulary(planted):
    store, lenses = planted
    ds = open_store(store)
    bound = lenses["temperature"].bind(ds)
    lensed, scale = bound.lensed(ds)
    in_vocab = np.zeros(N, bool)
    in_vocab[[3, 50, 151]] = True
    out = lens_pass(lensed, in_vocab, scale=scale).compute()
    inv = 1 / lenses["temperature"].array("temperature.npy")[bound.fold]  # (n, L)
    plain = AnswerLens.of(ds).logits(np.asarray(ds["resid"].values))
    np.testing.assert_allclose(
        out["answer_logits"].values, plain * inv[..., None], rtol=1e-5, atol=1e-6
    )
    full = lens_logits(np.asarray(ds["resid"].values)[in_vocab], ds["W_U"].values, norm_spec_of(ds))
    lse, _ = full_vocab_arrays(out)
    ref = logsumexp(full * inv[in_vocab][..., None], axis=-1)
    np.testing.assert_allclose(lse[in_vocab], ref, rtol=1e-5)
    assert (inv[:, -1] == 1).all()


@pytest.mark.parametrize("kind", KINDS)
def test_the_last_depth_is_the_identity_under_every_lens(planted, kind):
    store, lenses = planted
    logit = analyze_store(store, n_boot=20, lens="logit")
    res = analyze_store(store, n_boot=20, lens=lenses[kind])
    assert res.meta["checks"]["ok"] and res.meta["checks"]["model_logits_max_abs_diff"] < 1e-4
    last = DEPTH - 1
    for col in ("accuracy", "ece", "nll", "mean_confidence", "entropy", "brier"):
        assert res.layers[col][last] == logit.layers[col][last], col
    assert res.layers["lens"].unique().to_list() == [kind]
    assert res.landmarks["lens"]["kind"] == kind and res.landmarks["lens"]["cross_fitted"]


def test_an_infinite_penalty_shortcut_is_exactly_the_logit_lens(tmp_path, planted):
    store, _ = planted
    lens = fit_lens(store, "shortcut", tmp_path / "inf", penalty_grid=(), top_k=5)
    assert all(
        r["penalty"] == float("inf")
        for f in lens.info["penalties"]["per_fold"]
        for r in f
        if not r["identity"]
    )
    a = analyze_store(store, n_boot=50, lens=lens, vocab_examples=None)
    b = analyze_store(store, n_boot=50, lens="logit", vocab_examples=None)
    numeric = [c for c in b.layers.columns if c != "lens"]
    assert a.layers.select(numeric).equals(b.layers.select(numeric))
    # by_group: polars' group-by sums in any order, so the last digit varies between runs
    assert_frame_equal(a.by_group, b.by_group, check_exact=False, rel_tol=1e-12)
    for key in ("correction_phase", "plateau_to_last", "peak_miscalibration_layer"):
        assert a.landmarks.get(key) == b.landmarks.get(key), key


def test_a_named_logit_lens_adds_to_the_default_output_and_changes_nothing_in_it(planted):
    store, _ = planted
    plain = analyze_store(store, n_boot=50)
    named = analyze_store(store, n_boot=50, lens="logit")
    assert "lens" not in plain.layers.columns and "lens" not in plain.landmarks
    assert "lens" not in plain.meta["params"]
    assert named.layers.drop(
        "lens", "delta_ece_to_last", "delta_ece_to_last_lo", "delta_ece_to_last_hi"
    ).equals(plain.layers)
    assert named.layers.columns[0] == "lens" and named.landmarks["lens"] == {
        "name": "logit",
        "kind": "logit",
    }
    for key, value in plain.landmarks.items():
        if key not in ("notes", "definitions"):
            assert named.landmarks[key] == value, key


def test_another_store_is_refused_unless_transfer_and_then_reads_the_mean(tmp_path, planted):
    store, lenses = planted
    other = make_store(
        tmp_path / "o.zarr",
        resid=residuals(40, DEPTH, D, seed=5),
        dataset="other",
        w_u_seed=0,
        example_ids=[f"o/{i}" for i in range(40)],
    )
    ds = open_store(other)
    with pytest.raises(LensError, match="not on this store .* Pass --transfer"):
        lenses["shortcut"].bind(ds)
    bound = lenses["shortcut"].bind(ds, transfer=True)
    assert bound.transfer and (bound.fold == TRANSFER).all()
    lensed, _ = bound.lensed(ds)
    np.testing.assert_allclose(
        lensed["resid"].values, _manual(ds, lenses["shortcut"], bound.fold), rtol=1e-5, atol=1e-5
    )
    res = analyze_store(other, n_boot=20, lens=lenses["shortcut"].path, transfer=True)
    assert res.landmarks["lens"]["transfer"] and not res.landmarks["lens"]["cross_fitted"]
    with pytest.raises(LensError, match="not on this store"):
        analyze_store(other, n_boot=20, lens=lenses["shortcut"].path)


def test_another_model_is_refused_even_with_transfer(tmp_path, planted):
    store, lenses = planted
    other = make_store(
        tmp_path / "m.zarr", resid=residuals(30, DEPTH, D), dataset="other", w_u_seed=7
    )
    with pytest.raises(LensError, match="another model"):
        lenses["tuned"].bind(open_store(other), transfer=True)


def test_a_store_of_the_same_identity_with_unfitted_examples_is_refused(tmp_path, planted):
    store, lenses = planted
    ids = [f"ex/{i:05d}" for i in range(30)] + [f"new/{i}" for i in range(10)]
    resample = make_store(tmp_path / "r.zarr", resid=residuals(40, DEPTH, D), example_ids=ids)
    with pytest.raises(LensError, match="10 examples of this store .* were not in the fit"):
        lenses["temperature"].bind(open_store(resample))


def test_load_lens_refuses_what_is_not_a_lens(tmp_path):
    with pytest.raises(LensError, match="is not a lens folder .*`layercal lens fit STORE -o DIR"):
        load_lens(tmp_path)
    store = make_store(tmp_path / "s.zarr", n=40, n_depth=3, d=4)
    lens = fit_lens(store, "shortcut", tmp_path / "lens", top_k=4)
    info = json.loads((lens.path / "lens.json").read_text())
    (lens.path / "lens.json").write_text(json.dumps({**info, "format_version": 99}))
    with pytest.raises(LensError, match="version 99; this layercal reads"):
        load_lens(lens.path)
    (lens.path / "lens.json").write_text(json.dumps(info))
    (lens.path / "bias.npy").unlink()
    with pytest.raises(LensError, match="lacks bias.npy"):
        load_lens(lens.path)
