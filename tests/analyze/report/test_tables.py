"""analyze/report/tables.py: "What was analysed" shows what a reader needs, not the cache's
bookkeeping (which stays in meta.json)."""

from __future__ import annotations

import json

import numpy as np

from analyze import analyze_store
from analyze.report.tables import store_table
from tests.analyze.planted import make_store, random_logits


def test_what_was_analysed_lists_the_choices_not_the_bookkeeping(tmp_path):
    logits, label = random_logits(n=128, n_layers=4)
    store = make_store(tmp_path / "s.zarr", logits, label)
    res = analyze_store(store, n_boot=20, seed=3, cache_dir=tmp_path / "cache")
    table = store_table(res)
    rows = dict((k, v) for k, v in table.rows)
    assert rows["examples (n)"] == "128"
    assert rows["ECE bins"] == "10"
    assert rows["MCE: bins of at least"] == "10 examples"
    assert rows["intervals"] == "bootstrap 95 %, 20 resamples, seed 3"
    assert rows["examples used"] == "all"
    assert rows["temperature scaling"] == "fitted on the fit half, measured on the eval half"
    text = json.dumps(table.rows)
    for internal in ("cache_version", "cache_key", "at_bound", "timing", "chunk_rows"):
        assert internal not in text
    # ... and nothing is lost: meta.json keeps them
    assert {"cache_key", "timing", "temperature"} <= set(res.meta)
    assert "at_bound_layers" in res.meta["temperature"]
    assert np.isfinite(res.layers["ece"].to_numpy()).all()
