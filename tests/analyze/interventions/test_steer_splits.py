"""Which examples steering uses: in-domain fit/dev/test by question, and a direction from
another store of the same model (α chosen on this store's dev split)."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.interventions.artifact import ids_sha256
from analyze.interventions.direction import fit_direction
from analyze.interventions.steer import run_steering, steering_splits
from analyze.interventions.steer_data import StoreData
from analyze.lens.store import open_store
from tests.analyze.interventions.planted import confidence_store


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("splits")
    return {
        "tqa": open_store(confidence_store(tmp / "tqa.zarr", n=300, dataset="truthfulqa")),
        "mmlu": open_store(confidence_store(tmp / "mmlu.zarr", n=400, seed=4)),
    }


def test_in_domain_fit_dev_test_by_question_seeded(stores):
    ds = stores["tqa"]
    data = StoreData.of(ds)
    parts = {}
    for seed in (0, 0, 1):
        d = fit_direction(ds, estimator="pca", fit_fraction=1 / 3, seed=seed, n_boot=0)
        sp = steering_splits(data, d, 0.5, seed)
        fit = set(np.asarray(d.fit_ids).tolist())
        dev, test = set(data.example_id[sp.dev]), set(data.example_id[sp.test])
        assert not (fit & dev) and not (fit & test) and not (dev & test)
        assert fit | dev | test == set(data.example_id.tolist())  # every question, once
        assert len(fit) == 100 and len(dev) == 100 and len(test) == 100
        assert sp.info["source"] == "all examples" and sp.info["excluded_fit_examples"] == 100
        parts.setdefault(seed, []).append((ids_sha256(sorted(fit)), sp.info["test_ids_sha256"]))
    assert parts[0][0] == parts[0][1] and parts[0][0] != parts[1][0]  # seeded
    res = run_steering(ds, d, n_random=0, n_boot=0, seed=1)
    assert res.meta["direction_store"] == "this store"
    assert res.meta["splits"]["n_test"] == 100


def test_direction_from_another_store_alpha_on_this_stores_dev(stores):
    """The humanities direction of the MMLU store applied unchanged to the TruthfulQA store:
    every TruthfulQA question is dev or test (none were fit on), α is chosen on its dev."""
    d = fit_direction(stores["mmlu"], estimator="pca", category="humanities", n_boot=0)
    ds = stores["tqa"]
    res = run_steering(ds, d, n_random=0, n_boot=0)
    sp = res.meta["splits"]
    assert sp["source"] == "all examples" and sp["excluded_fit_examples"] == 0
    assert sp["n_dev"] + sp["n_test"] == 300
    assert res.meta["direction_store"] == "another store of the same model"
    assert res.meta["scale"] == d.scale_at(7)  # s applied unchanged, the fit store's
    dev = res.sweep.filter((res.sweep["method"] == "direction") & (res.sweep["split"] == "dev"))
    assert dev["n"][0] == sp["n_dev"]
