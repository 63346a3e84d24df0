"""The steering table's endpoint columns: beside ECE its noise floor and the smooth ECE with a
bootstrap interval, for every row, from that row's test-split confidences."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.calibration import ece_floor, smece
from analyze.interventions.direction import fit_direction
from analyze.interventions.steer import run_steering, steering_splits
from analyze.interventions.steer_data import StoreData
from analyze.lens.store import open_store
from tests.analyze.interventions.formulas import softmax
from tests.analyze.interventions.planted import confidence_store


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    ds = open_store(confidence_store(tmp_path_factory.mktemp("tables") / "s.zarr", n=400))
    d = fit_direction(ds, estimator="pca", category="humanities", n_boot=0)
    return ds, d, run_steering(ds, d, n_random=1, n_boot=300, seed=2)


def test_floor_and_smooth_ece_of_each_row(run):
    ds, d, res = run
    data = StoreData.of(ds)
    sp = steering_splits(data, d, 0.5, 2)
    h, lab = data.h[sp.test], data.label[sp.test]
    t = res.meta["chosen"]["temperature"]
    alpha = res.meta["chosen"]["direction"]
    shift = alpha * d.scale_at(data.layer) * d.at(data.layer)
    for name, z in (
        ("none", data.lens.logits(h)),
        ("direction", data.lens.logits(h + shift)),
        ("temperature", data.lens.logits(h) / t),
    ):
        row = res.table.filter(res.table["method"] == name).row(0, named=True)
        p = softmax(z)
        conf, correct = p.max(axis=1), (p.argmax(axis=1) == lab).astype(float)
        assert row["ece_floor"] == pytest.approx(float(ece_floor(conf, 10, seed=2)), abs=1e-12)
        assert row["smece"] == pytest.approx(float(smece(conf, correct)), abs=1e-12)
        assert row["smece_lo"] <= row["smece"] <= row["smece_hi"]
        # a perfectly calibrated predictor's binned ECE at n = 100 is far from 0
        assert 0.02 < row["ece_floor"] < 0.2
    # the interval: the 2.5% and 97.5% points of smECE over the shared resamples, by hand
    from analyze.calibration import draw_weights

    row = res.table.row(0, named=True)
    p = softmax(data.lens.logits(h))
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == lab).astype(float)
    reps = []
    for w in draw_weights(lab.size, 300, 2):
        idx = np.repeat(np.arange(lab.size), w)  # the resample as a list of examples
        reps.append(float(smece(conf[idx], correct[idx])))
    lo, hi = np.quantile(reps, [0.025, 0.975])
    assert row["smece_lo"] == pytest.approx(lo, abs=1e-9)
    assert row["smece_hi"] == pytest.approx(hi, abs=1e-9)
