"""``layercal store info``: one screen, JSON, partial stores, dataset licences."""

from __future__ import annotations

import json

import pytest
import zarr

from layercal.store import store_info
from layercal.store.cli import main as store_main
from tests.layercal.store.fixtures import (
    BLOCK,
    D,
    L,
    N,
    build,
    copy,
    objects,
)


def test_info_one_screen(ref, capsys):
    assert store_main(["store", "info", str(ref)]) == 0
    out = capsys.readouterr().out
    assert "tiny-test" in out and "mmlu/test" in out and "licence MIT" in out
    assert "lm-eval-mmlu" in out and "300/300 examples, 3/3 blocks written" in out
    assert "resid" in out and "shards (128, 5, 32)" in out and "compression" in out
    assert len(out.splitlines()) <= 40


def test_info_json_sizes_completeness_and_derived(ref, tmp_path, capsys):
    store = copy(ref, tmp_path / "s.zarr")
    zarr.open_group(store, mode="r+").create_group("derived").create_array(
        "ece", shape=(L,), dtype="float32"
    )
    assert store_main(["store", "info", str(store), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    files = {k: (store / k).stat().st_size for k in objects(store)}
    assert d["size"]["files"] == len(files)
    assert d["size"]["stored_bytes"] == sum(files.values())
    resid = next(r for r in d["arrays"] if r["name"] == "resid")
    assert resid["shape"] == [N, L, D] and resid["dtype"] == "float32"
    assert resid["nbytes"] == N * L * D * 4
    assert resid["stored_bytes"] == sum(v for k, v in files.items() if k.startswith("resid/c/"))
    s = d["size"]
    assert s["compression_ratio"] == pytest.approx(s["numeric_nbytes"] / s["numeric_stored_bytes"])
    assert d["derived"] == ["derived"] and d["consolidated"] is True
    assert d["dataset"]["licence"] == "MIT" and d["template"]["name"] == "lm-eval-mmlu"
    assert d["provenance"]["runs"][0]["host"] == "host-0/1"


def test_info_partial_store_lists_missing_blocks(tmp_path):
    d = store_info(str(build(tmp_path / "p.zarr", [0, 2])))
    c = d["completeness"]
    assert c["written_examples"] == BLOCK + (N - 2 * BLOCK)
    assert c["missing_blocks"] == [1] and c["written_blocks"] == 2
    assert d["consolidated"] is False


def test_dataset_licences():
    from layercal.store import dataset_licence

    assert dataset_licence("mmlu") == "MIT"
    assert dataset_licence("truthfulqa-mc1") == "Apache-2.0"
    assert dataset_licence("file") == "unknown"
