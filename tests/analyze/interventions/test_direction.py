"""Calibration-direction estimators, the fit on a store, the artifact and its model check."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analyze.interventions.direction import (
    ESTIMATORS,
    Direction,
    DirectionError,
    DirectionMismatchError,
    check_direction,
    estimate,
    fit_direction,
    stratified_split,
)
from analyze.lens.store import open_store, store_hash
from tests.analyze.interventions.planted import planted_direction, planted_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return planted_store(tmp_path_factory.mktemp("dir") / "planted.zarr")


def _deltas(rng, n=300, m=4, d=20, noise=0.2):
    return rng.normal(size=(n, m, d)) * noise


def test_each_estimator_recovers_a_planted_direction():
    rng = np.random.default_rng(0)
    d = 20
    u, w = np.eye(d)[0], np.eye(d)[1]  # u: the signal; w: a nuisance shared by every example
    c = 1 + 0.8 * rng.normal(size=300)
    shift = _deltas(rng) + c[:, None, None] * u  # mean along u, varying amount
    assert estimate(shift, "mean").vector @ u > 0.99
    assert estimate(shift, "per_layer").per_layer.shape == (4, d)
    assert all(r @ u > 0.98 for r in estimate(shift, "per_layer").per_layer)
    # pca: the variance is along u, the (constant) mean along w; sign follows the mean
    spread = _deltas(rng) + rng.normal(size=(300, 1, 1)) * u + 3 * w + 0.3 * u
    fit = estimate(spread, "pca")
    assert fit.vector @ u > 0.98 and fit.explained[0] > 0.5
    assert abs(estimate(spread, "mean").vector @ u) < 0.2  # mean finds the nuisance instead
    # contrast: overconfident-wrong examples move along +u, correct ones along -u, both along w
    over = np.arange(300) < 100
    correct = np.arange(300) >= 150
    sign = np.where(over, 1.0, np.where(correct, -1.0, 0.0))
    contrast = _deltas(rng) + sign[:, None, None] * u + 2 * w
    fit = estimate(contrast, "contrast", overconfident_wrong=over, correct=correct)
    assert fit.vector @ u > 0.99
    with pytest.raises(DirectionError, match="both groups"):
        estimate(contrast, "contrast", overconfident_wrong=over & False, correct=correct)
    with pytest.raises(DirectionError, match="unknown estimator"):
        estimate(contrast, "median")  # type: ignore[arg-type]


@pytest.mark.parametrize("estimator", ["mean", "pca", "per_layer"])
def test_fit_on_store_recovers_planted_direction(store, estimator):
    ds = open_store(store)
    d = fit_direction(ds, estimator=estimator, window=(2, 7), n_boot=8)
    assert abs(d.vector @ planted_direction(24)) > 0.95
    assert d.info["window"] == [2, 7] and d.info["window_source"] == "explicit"
    st = d.info["diagnostics"]["stability"]
    assert st["mean_pairwise_cosine"] > 0.95 and st["n_boot"] == 8
    assert d.scale.shape == (8,) and np.all(np.diff(d.scale[1:]) > 0)  # norms grow with depth


def test_contrast_on_store_runs_and_default_window(store):
    ds = open_store(store)
    d = fit_direction(ds, estimator="contrast", n_boot=0, last_m=3)
    assert abs(np.linalg.norm(d.vector) - 1) < 1e-12
    assert d.info["window_source"] in ("correction_phase", "last_m")
    if d.info["window_source"] == "last_m":
        assert d.info["window"] == [4, 7] and d.info["window_notes"]


def test_artifact_round_trip_and_provenance(store, tmp_path):
    ds = open_store(store)
    d = fit_direction(ds, estimator="per_layer", category="humanities", fit_fraction=0.4, seed=3)
    folder = d.save(tmp_path / "dir")
    info = json.loads((folder / "direction.json").read_text())
    for key in ("store_hash", "w_u_sha256", "hidden", "estimator", "window", "layercal_version"):
        assert info[key] is not None, key
    assert info["store_hash"] == store_hash(ds) and info["hidden"] == 24
    assert info["split"]["seed"] == 3 and info["split"]["category"] == "humanities"
    back = Direction.load(folder)
    np.testing.assert_array_equal(back.vector, d.vector)
    np.testing.assert_array_equal(back.per_layer, d.per_layer)
    assert set(back.fit_ids.tolist()) == set(d.fit_ids.tolist())
    assert all("philosophy" in i or "world_religions" in i for i in back.fit_ids)
    np.testing.assert_array_equal(back.at(7), d.per_layer[-1])
    np.testing.assert_array_equal(back.at(0), d.vector)  # outside the window: the main vector
    with pytest.raises(DirectionError, match="not a direction folder"):
        Direction.load(tmp_path)


def test_direction_refuses_another_model(store, tmp_path):
    d = fit_direction(open_store(store), n_boot=0)
    check_direction(d, open_store(store))  # its own store: fine
    other_hidden = open_store(planted_store(tmp_path / "h.zarr", hidden=16))
    with pytest.raises(DirectionMismatchError, match="hidden size 24.*has hidden size 16"):
        check_direction(d, other_hidden)
    other_w_u = open_store(planted_store(tmp_path / "w.zarr", w_seed=1))
    with pytest.raises(DirectionMismatchError, match="unembedding"):
        check_direction(d, other_w_u)


def test_stratified_split_is_seeded_per_subject_and_order_free():
    subject = np.array(["a"] * 10 + ["b"] * 7)
    ids = np.array([f"x{i}" for i in range(17)])
    m = stratified_split(subject, ids, 0.5, seed=1)
    assert 4 <= m[:10].sum() <= 6 and 3 <= m[10:].sum() <= 4
    perm = np.random.default_rng(0).permutation(17)
    m2 = stratified_split(subject[perm], ids[perm], 0.5, seed=1)
    assert set(ids[perm][m2]) == set(ids[m])
    assert not np.array_equal(m, stratified_split(subject, ids, 0.5, seed=2))
    assert ESTIMATORS == ("mean", "pca", "per_layer", "contrast")
