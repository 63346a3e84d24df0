"""analyze/lens/fitted/fit.py: cross-fitting (no example in the fit that lenses it), labels never
read, the last depth the identity, the artifact's contents."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analyze.lens.fitted import KINDS, LensError, fit_lens, load_lens
from analyze.lens.fitted.artifact import read_block
from tests.analyze.lens.fitted.planted import make_store, residuals

N, DEPTH, D = 150, 4, 8
FAST = {"top_k": 12, "max_iter": 15}


def _translators(lens):
    """What lenses each fold: its arrays per fold (affine: weight and bias; temperature)."""
    k = lens.info["folds"]["k"]
    if lens.kind == "temperature":
        t = lens.array("temperature.npy")
        return [t[f] for f in range(k)]
    out = []
    for f in range(k):
        w = [read_block(lens.path / "weight.npy", (f, d)).ravel() for d in range(DEPTH)]
        b = [read_block(lens.path / "bias.npy", (f, d)) for d in range(DEPTH)]
        out.append(np.concatenate([np.stack(w), np.stack(b)], axis=1))
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_an_examples_own_residual_is_never_in_the_fit_that_lenses_it(tmp_path, kind):
    h = residuals(N, DEPTH, D, noise=0.2)
    a = fit_lens(make_store(tmp_path / "a.zarr", resid=h), kind, tmp_path / "la", **FAST)
    i = 17
    h2 = h.copy()
    h2[i] = np.random.default_rng(9).normal(0, 5, (DEPTH, D))  # example i, every depth
    b = fit_lens(make_store(tmp_path / "b.zarr", resid=h2), kind, tmp_path / "lb", **FAST)
    fold = a.array("fold.npy")
    assert np.array_equal(fold, b.array("fold.npy"))
    own = int(fold[i])
    ta, tb = _translators(a), _translators(b)
    # the fold that lenses example i was fitted without it: bitwise the same translator ...
    assert np.array_equal(ta[own], tb[own])
    assert np.array_equal(a.array("tokens.npy")[own], b.array("tokens.npy")[own])
    # ... while every other fold's fit saw the change (so this test can fail)
    others = [f for f in range(len(ta)) if f != own]
    assert all(not np.array_equal(ta[f], tb[f]) for f in others)


@pytest.mark.parametrize("kind", ["temperature", "shortcut"])
def test_labels_are_never_read(tmp_path, kind):
    h = residuals(N, DEPTH, D, noise=0.2)
    lenses = []
    for j in range(2):
        label = np.random.default_rng(j).integers(0, 4, N)
        store = make_store(tmp_path / f"s{j}.zarr", resid=h, label=label)
        lenses.append(fit_lens(store, kind, tmp_path / f"l{j}", **FAST))
    sha = [{k: v["sha256"] for k, v in x.info["arrays"].items()} for x in lenses]
    assert sha[0] == sha[1] and lenses[0].info["labels_used"] is False


@pytest.mark.parametrize("kind", KINDS)
def test_artifact_records_what_the_issue_names_and_the_last_depth_is_the_identity(tmp_path, kind):
    store = make_store(tmp_path / "s.zarr", n=N, n_depth=DEPTH, d=D, noise=0.2)
    lens = fit_lens(store, kind, tmp_path / "lens", folds=3, **FAST)
    info = json.loads((tmp_path / "lens" / "lens.json").read_text())
    for key in ("kind", "store_hash", "folds", "diagnostics", "penalties", "token_set"):
        assert key in info, key
    assert info["kind"] == kind and info["folds"]["k"] == 3 and sum(info["folds"]["sizes"]) == N
    assert info["token_set"]["top_k"] == 12 and info["token_set"]["size"] == 16
    rows = info["diagnostics"]["per_depth"]
    assert [r["layer"] for r in rows] == list(range(DEPTH))
    last = rows[-1]
    assert last["kl_to_final"] == pytest.approx(0, abs=1e-12) == last["kl_to_final_logit"]
    assert last["top1_agreement"] == last["top1_agreement_logit"]
    if kind == "temperature":
        assert (lens.array("temperature.npy")[:, -1] == 1).all()
    else:
        for f in range(3):
            assert not read_block(lens.path / "weight.npy", (f, DEPTH - 1)).any()
            assert not read_block(lens.path / "bias.npy", (f, DEPTH - 1)).any()
    # the planted map is linear, so the shortcut and tuned lenses beat the logit lens early
    if kind != "temperature":
        assert rows[0]["kl_to_final"] < 0.5 * rows[0]["kl_to_final_logit"]
    assert all(r["kl_to_final"] <= r["kl_to_final_logit"] + 1e-9 for r in rows)
    for name, rec in info["arrays"].items():
        assert list(np.load(tmp_path / "lens" / name).shape) == rec["shape"]


def test_an_existing_lens_is_kept_unless_overwrite(tmp_path):
    store = make_store(tmp_path / "s.zarr", n=60, n_depth=3, d=6)
    first = fit_lens(store, "temperature", tmp_path / "lens", top_k=5)
    before = (tmp_path / "lens" / "lens.json").read_bytes()
    with pytest.raises(LensError, match="already exists; pass --overwrite"):
        fit_lens(store, "shortcut", tmp_path / "lens")
    assert (tmp_path / "lens" / "lens.json").read_bytes() == before
    second = fit_lens(store, "shortcut", tmp_path / "lens", overwrite=True, top_k=5)
    assert first.kind == "temperature" and load_lens(tmp_path / "lens").kind == second.kind
    assert not list(tmp_path.glob(".tmp-*")) and not list(tmp_path.glob(".old-*"))


def test_unknown_kind_is_refused(tmp_path):
    store = make_store(tmp_path / "s.zarr", n=30, n_depth=3, d=4)
    with pytest.raises(LensError, match="unknown lens kind 'tunned'"):
        fit_lens(store, "tunned", tmp_path / "lens")
    assert not (tmp_path / "lens").exists()
