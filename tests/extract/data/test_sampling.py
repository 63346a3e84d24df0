"""--per-subject: at most N questions of each subject, overrides by category and subject, seeded
per subject, clear errors."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from extract.data.load import MMLU_CATEGORIES, DatasetError, load_dataset
from extract.data.sampling import parse_per_subject, per_subject_indices


def test_parse():
    assert parse_per_subject("40,humanities=120") == {"*": 40, "humanities": 120}
    assert parse_per_subject("Formal Logic=all, 7") == {"formal_logic": None, "*": 7}
    assert parse_per_subject({"humanities": 3}) == {"humanities": 3}
    for bad in ("0", "x", "humanities=-1", "", "5,5", "a=1,a=2"):
        with pytest.raises(DatasetError, match="per_subject"):
            parse_per_subject(bad)


def test_counts_by_category_and_subject(data_dir):
    ds = load_dataset(
        "mmlu",
        data_dir=data_dir,
        per_subject="40,humanities=120,world_religions=all,jurisprudence=5",
    )
    counts = Counter(ex.subject for ex in ds.examples)
    full = Counter(ex.subject for ex in load_dataset("mmlu", data_dir=data_dir).examples)
    for subject, n in counts.items():
        if subject == "world_religions":
            assert n == full[subject] == 171
        elif subject == "jurisprudence":
            assert n == 5
        elif MMLU_CATEGORIES[subject] == "humanities":
            assert n == min(120, full[subject])
        else:
            assert n == min(40, full[subject])
    assert set(counts) == set(full)
    ids = [ex.example_id for ex in ds.examples]
    order = {
        ex.example_id: i for i, ex in enumerate(load_dataset("mmlu", data_dir=data_dir).examples)
    }
    assert [order[i] for i in ids] == sorted(order[i] for i in ids)  # dataset order kept
    assert ds.info["per_subject"] == {
        "*": 40,
        "humanities": 120,
        "world_religions": None,
        "jurisprudence": 5,
    }
    assert ds.info["n_available"] == 14042 and ds.info["n_examples"] == len(ids)


def test_a_subject_sample_does_not_depend_on_the_others(data_dir):
    one = load_dataset("mmlu", data_dir=data_dir, subjects=["philosophy"], per_subject="10", seed=3)
    two = load_dataset(
        "mmlu", data_dir=data_dir, subjects=["philosophy", "anatomy"], per_subject="10", seed=3
    )
    pick = [ex.example_id for ex in two.examples if ex.subject == "philosophy"]
    assert [ex.example_id for ex in one.examples] == pick
    other = load_dataset(
        "mmlu", data_dir=data_dir, subjects=["philosophy"], per_subject="10", seed=4
    )
    assert [ex.example_id for ex in other.examples] != pick


def test_limit_applies_after_per_subject(data_dir):
    ds = load_dataset("mmlu", data_dir=data_dir, category="stem", per_subject="10", limit=25)
    assert len(ds.examples) == 25 and max(Counter(e.subject for e in ds.examples).values()) <= 10


def test_unknown_name_is_an_error_with_a_suggestion(data_dir):
    with pytest.raises(DatasetError, match="humanitis.*Did you mean: humanities"):
        load_dataset("mmlu", data_dir=data_dir, per_subject="humanitis=3")
    with pytest.raises(DatasetError, match="no subject or category"):
        per_subject_indices([], {"stem": 1}, 0)


def test_cli_error_writes_nothing(tmp_path, data_dir):
    out = tmp_path / "s.zarr"
    cmd = [sys.executable, "-m", "extract", "--model", "smollm2-135m", "--dataset", "mmlu"]
    cmd += ["--data-dir", str(data_dir), "--per-subject", "40,humanities=lots", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 1 and "'lots' is not a positive count" in proc.stderr
    assert not out.exists()
