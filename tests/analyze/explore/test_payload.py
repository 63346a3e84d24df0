"""What the page holds of a store: the analysis' numbers as they are, the per-question arrays,
and the packing the page's code reads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analyze.calibration import bootstrap_ci
from analyze.explore import AnalysisParams, load_source, question_summary
from analyze.explore.payload import PAGE_METRICS, pack, page_payload, store_payload, unpack
from tests.analyze.planted import make_store, random_logits


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    z, label = random_logits(n=200, n_layers=5, seed=3)
    choices = [list("abc") if i % 7 == 0 else list("abcd") for i in range(200)]
    path = make_store(tmp_path_factory.mktemp("pl") / "p.zarr", z, label % 3, choices=choices)
    return load_source(path, AnalysisParams(n_boot=100), None)


def test_the_analysis_numbers_go_in_unchanged(source):
    doc, arrays = store_payload(source)
    layers = source.result.layers
    for name in ("accuracy", "ece", "ece_lo", "nll_hi", "mean_confidence", "option_mass"):
        assert doc["metrics"][name] == pytest.approx(layers[name].to_list(), abs=0)
    assert doc["layers"] == list(range(5)) and doc["n"] == 200
    assert doc["reliability"]["count"] == source.result.reliability["count"].tolist()
    assert doc["panel"] == [
        "accuracy", "ece", "smece", "mce", "brier", "nll", "mean_confidence", "option_mass"
    ]  # fmt: skip
    # option mass has no interval in layers.csv: the same resamples as the analysis' intervals
    mass = source.result.examples["option_mass"].astype(np.float64)
    _, lo, hi = bootstrap_ci(lambda m: m.mean(axis=0), mass, n_boot=100, seed=0)
    assert doc["metrics"]["option_mass_lo"] == pytest.approx(lo.tolist(), abs=0)
    assert doc["metrics"]["option_mass_hi"] == pytest.approx(hi.tolist(), abs=0)
    assert set(PAGE_METRICS) <= set(doc["metrics"])


def test_a_metric_column_the_analysis_adds_shows_up(source):
    import polars as pl

    res = source.result
    extra = res.layers.with_columns(
        smece=pl.col("ece") / 2, smece_lo=pl.col("ece") / 3, smece_hi=pl.col("ece")
    )
    patched = source.__class__(**{**source.__dict__, "result": res.__class__(
        extra, res.by_group, res.landmarks, res.reliability, res.meta, res.examples
    )})  # fmt: skip
    doc, _ = store_payload(patched)
    assert doc["panel"][:3] == ["accuracy", "ece", "smece"] and "smece" in doc["depth_metrics"]
    assert doc["metrics"]["smece_lo"] == pytest.approx((res.layers["ece"] / 3).to_list())


def test_questions_and_arrays(source):
    doc, arrays = store_payload(source)
    q = doc["questions"]
    assert q["id"] == source.questions["example_id"].to_list()
    assert [len(c) for c in q["choices"][:8]] == [3, 4, 4, 4, 4, 4, 4, 3]
    z = source.result.examples["answer_logits"]
    np.testing.assert_array_equal(arrays["logits"][1], z[1])
    assert (arrays["logits"][::7, :, 3] == 0).all()  # absent options: 0, and masked
    assert arrays["mask"][::7, 3].sum() == 0
    s = question_summary(z, source.mask)
    np.testing.assert_array_equal(arrays["commitment"], s["commitment"])
    np.testing.assert_array_equal(arrays["falls"], s["falls"].astype(np.uint8))


def test_pack_round_trip_is_exact_aligned_and_strict_json(source):
    doc, arrays = page_payload([source, source])
    json.dumps(doc, allow_nan=False)  # NaN would not parse in the page
    back, got = unpack(pack(doc, arrays))
    assert back["stores"][1]["metrics"] == doc["stores"][1]["metrics"]
    for a, b in zip(arrays, got):
        assert set(a) == set(b)
        for k in a:
            assert b[k].dtype == a[k].dtype.newbyteorder("<") and b[k].ctypes.data % 8 == 0
            np.testing.assert_array_equal(b[k], a[k])
