"""analyze/compare.py: a few-shot store against the zero-shot store of the same questions, on
the same examples (planted stores: the same W_U is the same "model")."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.analysis import analyze_store
from analyze.compare import (
    LANDMARK_KEYS,
    StoreMismatch,
    compare_fewshot,
    same_examples,
    window_deltas,
)
from analyze.lens.store import open_store
from tests.analyze.interventions.planted import planted_store


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    zero = planted_store(tmp / "zero.zarr", n=240)
    few = planted_store(tmp / "few.zarr", n=160, seed=5)  # the first 160 ids, other residuals
    return tmp, zero, few


def test_same_examples_follows_the_other_stores_ids(stores):
    _, zero, _ = stores
    ref = open_store(str(zero))
    order = np.random.default_rng(0).permutation(ref.sizes["example"])[:50]
    other = ref.isel(example=order)
    picked = same_examples(ref, other)
    assert list(picked["example_id"].values) == list(other["example_id"].values)
    np.testing.assert_array_equal(picked["resid"].values, ref["resid"].values[order])


def test_same_examples_refuses_ids_the_reference_lacks(stores, tmp_path):
    _, zero, _ = stores
    more = open_store(str(planted_store(tmp_path / "more.zarr", n=260)))
    with pytest.raises(StoreMismatch, match="20 examples are not in Z, e.g. mmlu/test/"):
        same_examples(open_store(str(zero)), more, ("Z", "M"))


def test_same_examples_refuses_another_model(stores, tmp_path):
    _, zero, _ = stores
    other = open_store(str(planted_store(tmp_path / "o.zarr", n=100, w_seed=1)))
    with pytest.raises(StoreMismatch, match="O was extracted from another model than Z"):
        same_examples(open_store(str(zero)), other, ("Z", "O"))


def test_compare_fewshot_analyses_both_on_the_same_examples(stores, tmp_path):
    _, zero, few = stores
    c = compare_fewshot(str(zero), str(few), n_boot=50)
    s = c.summary
    assert s["n"] == 160 and s["stores"] == {"zero": str(zero), "few": str(few)}
    assert list(c.results) == ["zero-shot", "few-shot"]
    # the zero-shot side is the zero-shot store's analysis of the few-shot store's 160 ids
    direct = analyze_store(
        open_store(str(zero)).isel(example=range(160)), n_boot=50, vocab_examples=0
    )
    last = direct.layers.sort("layer").tail(1).row(0, named=True)
    assert s["zero-shot"]["accuracy_last"] == pytest.approx(last["accuracy"], abs=1e-12)
    assert s["zero-shot"]["ece_last"] == pytest.approx(last["ece"], abs=1e-12)
    assert set(s["few-shot"]["landmarks"]) == set(LANDMARK_KEYS)
    assert c.results["few-shot"].meta["label"].endswith("few-shot")
    phase = s["zero-shot"]["landmarks"]["correction_phase"]
    assert phase, "the planted store has a correction phase"
    fw = s["fixed_window"]
    assert fw["window"] == [phase["start"], phase["end"]]
    for k in ("n_test", "ece_start", "ece_end", "delta_ece", "delta_ece_lo", "delta_ece_hi"):
        assert fw["zero-shot"][k] == pytest.approx(phase[k], abs=1e-12), k
    c.save(tmp_path / "out")
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"zero-shot", "few-shot", "summary.json", "report.md"} <= names


def test_window_deltas_counts_the_test_half(stores):
    _, zero, _ = stores
    ds = open_store(str(zero))
    params = {"bins": 10, "bootstrap": {"n_boot": 20, "seed": 0, "alpha": 0.05}}
    w = window_deltas(ds, (5, 7), params)
    assert 0 < w["n_test"] < ds.sizes["example"]
    assert w["delta_ece"] == pytest.approx(w["ece_end"] - w["ece_start"], abs=1e-12)
    assert 0 <= w["accuracy_start"] <= 1 and 0 <= w["confidence_end"] <= 1


def test_compare_fewshot_refuses_before_analysing(stores, tmp_path):
    _, zero, _ = stores
    other = planted_store(tmp_path / "o.zarr", n=100, w_seed=1)
    with pytest.raises(StoreMismatch, match="another model"):
        compare_fewshot(str(zero), str(other), n_boot=10)
