"""analyze/lens/fitted/tokens.py: each fold's token set from its training examples' final
distributions, the final argmax and log-sum-exp over the whole vocabulary."""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp, softmax

from analyze.lens.fitted.folds import cross_folds
from analyze.lens.fitted.tokens import readout, readouts, set_log_probs, token_sets
from analyze.lens.store import norm_spec_of, open_store
from layercal.lens import lens_logits
from tests.analyze.lens.fitted.planted import ANSWER_IDS, make_store


def test_token_sets_equal_a_brute_force_ranking(tmp_path, monkeypatch):
    monkeypatch.setattr("analyze.lens.fitted.tokens.ROW_BATCH", 7)  # several row batches
    monkeypatch.setattr("analyze.lens.fitted.tokens.VOCAB_CHUNK", 64)  # and vocabulary blocks
    ds = open_store(make_store(tmp_path / "s.zarr", n=50, vocab=300))
    h = np.asarray(ds["resid"].isel(layer=-1).values)
    folds = cross_folds(ds["subject"].values, ds["example_id"].values, 3, 0)
    sets = token_sets(ds, h, folds, top_k=10)
    full = lens_logits(h, np.asarray(ds["W_U"].values), norm_spec_of(ds))  # (n, V)
    assert np.array_equal(sets.final_top1, full.argmax(axis=1))
    np.testing.assert_allclose(sets.final_lse, logsumexp(full, axis=1), rtol=1e-6)
    p = softmax(full, axis=1)
    assert sets.ids.shape == (3, 4 + 10)
    for f in range(3):
        assert np.array_equal(sets.ids[f, :4], ANSWER_IDS)
        mean = p[folds != f].sum(axis=0)
        mean[ANSWER_IDS] = -1
        assert np.array_equal(sets.ids[f, 4:], np.argsort(-mean, kind="stable")[:10])


def test_readout_and_set_log_probs_are_the_reference_lens_on_the_set(tmp_path):
    ds = open_store(make_store(tmp_path / "s.zarr", n=20, vocab=100))
    ids = np.array([50, 3, 99, 7])
    h = np.asarray(ds["resid"].isel(layer=1).values)
    z = readout(ds, ids).logits(h)
    ref = lens_logits(h, np.asarray(ds["W_U"].values)[ids], norm_spec_of(ds))
    np.testing.assert_allclose(z, ref, rtol=1e-6)
    np.testing.assert_allclose(np.exp(set_log_probs(z)), softmax(ref, axis=1), rtol=1e-9)
    both = readouts(ds, np.stack([ids, ids[::-1]]))
    assert np.array_equal(both[0].w, readout(ds, ids).w)
    assert np.array_equal(both[1].w, readout(ds, ids[::-1]).w)
