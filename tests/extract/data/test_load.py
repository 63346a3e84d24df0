"""extract.data.load: MMLU / TruthfulQA MC1 / question files, from a data dir or a hub-layout copy."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from extract.data.load import (
    CATEGORY_NAMES,
    MMLU_CATEGORIES,
    MMLU_SUBJECTS,
    DatasetError,
    MCDataset,
    load_dataset,
)
from tests import REPO

HUMANITIES = {
    "formal_logic",
    "high_school_european_history",
    "high_school_us_history",
    "high_school_world_history",
    "international_law",
    "jurisprudence",
    "logical_fallacies",
    "moral_disputes",
    "moral_scenarios",
    "philosophy",
    "prehistory",
    "professional_law",
    "world_religions",
}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder holding mmlu/ and truthfulqa/ (never copied into the repo)."""
    env = os.environ.get("LAYERCAL_DATA_DIR")
    root = Path(env) if env else REPO.parent / "shared" / "data"
    if not (root / "mmlu" / "test").is_dir():
        pytest.fail(f"benchmark data not found at {root}; set LAYERCAL_DATA_DIR to ../shared/data")
    return root


@pytest.fixture(scope="session")
def mmlu_test(shared_data: Path) -> MCDataset:
    return load_dataset("mmlu", data_dir=shared_data)


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No LAYERCAL_DATA_DIR, and the `datasets` cache inside tmp_path."""
    import datasets

    monkeypatch.delenv("LAYERCAL_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def _raw_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def _copy_subject(shared_data: Path, dst: Path, subject: str, split: str = "test") -> Path:
    folder = dst / "mmlu" / split
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{subject}_{split}.csv"
    shutil.copyfile(shared_data / "mmlu" / split / f"{subject}_{split}.csv", target)
    return target


# --- MMLU from the CSV release ------------------------------------------------------------


def test_full_test_split(mmlu_test: MCDataset) -> None:
    assert len(mmlu_test.examples) == 14042
    assert mmlu_test.subjects == MMLU_SUBJECTS and len(MMLU_SUBJECTS) == 57
    assert list(MMLU_SUBJECTS) == sorted(MMLU_SUBJECTS)
    ids = [ex.example_id for ex in mmlu_test.examples]
    assert len(set(ids)) == len(ids)
    assert all(len(ex.choices) == 4 and 0 <= ex.label < 4 for ex in mmlu_test.examples)
    assert mmlu_test.max_choices == 4
    info = mmlu_test.info
    assert info["n_examples"] == 14042 and info["category_map"] == "hendrycks2021"
    assert info["source"] == mmlu_test.source and mmlu_test.source.startswith("data-dir:")


def test_first_rows_ids_and_order(mmlu_test: MCDataset) -> None:
    first = mmlu_test.examples[0]
    assert first.example_id == "mmlu/test/abstract_algebra/0000"
    assert first.question.startswith("Find the degree for the given field extension")
    assert first.choices == ("0", "4", "2", "6") and first.label == 1
    assert first.category == "stem"
    # subjects alphabetical, rows in file order
    subjects = [ex.subject for ex in mmlu_test.examples]
    assert subjects == sorted(subjects)
    law = [ex.example_id for ex in mmlu_test.examples if ex.subject == "professional_law"]
    assert law[0].endswith("/0000") and law[-1] == f"mmlu/test/professional_law/{len(law) - 1:04d}"


def test_other_splits(shared_data: Path) -> None:
    val = load_dataset("mmlu", split="val", data_dir=shared_data)
    assert len(val.examples) == 1531 and val.split == "validation"
    assert val.examples[0].example_id.startswith("mmlu/validation/")
    assert (
        load_dataset("mmlu", split="validation", data_dir=shared_data).content_hash()
        == val.content_hash()
    )
    assert len(load_dataset("mmlu", split="dev", data_dir=shared_data).examples) == 285
    with pytest.raises(DatasetError, match="'test', 'validation'"):
        load_dataset("mmlu", split="train", data_dir=shared_data)


def test_categories(mmlu_test: MCDataset, shared_data: Path) -> None:
    by_cat = {c: {s for s, k in MMLU_CATEGORIES.items() if k == c} for c in CATEGORY_NAMES}
    assert by_cat["humanities"] == HUMANITIES
    assert {c: len(v) for c, v in by_cat.items()} == {
        "humanities": 13,
        "stem": 18,
        "social_sciences": 12,
        "other": 14,
    }
    ds = load_dataset("mmlu", category="Humanities", data_dir=shared_data)
    assert set(ds.subjects) == HUMANITIES and ds.info["category"] == "humanities"
    assert len(ds.examples) == sum(ex.subject in HUMANITIES for ex in mmlu_test.examples) == 4705
    assert {ex.category for ex in ds.examples} == {"humanities"}


def test_multiline_crlf_and_none(mmlu_test: MCDataset) -> None:
    by_id = {ex.example_id: ex for ex in mmlu_test.examples}
    # a CRLF file whose row 186 has newlines inside a quoted field
    em = [ex for ex in mmlu_test.examples if ex.subject == "elementary_mathematics"]
    assert len(em) == 378
    assert em[186].question.startswith("There are three different sections")
    assert "\n* red section seats 200 people\n" in em[186].question
    assert em[186].choices == ("260", "380", "640", "740") and em[186].label == 3
    assert not any(
        t.endswith("\r") for ex in mmlu_test.examples for t in (ex.question, *ex.choices)
    )
    assert sum(ex.subject == "clinical_knowledge" for ex in mmlu_test.examples) == 265
    assert by_id["mmlu/test/college_physics/0060"].choices[3] == "None"
    assert by_id["mmlu/test/college_biology/0013"].question.endswith(
        "I. DNA\nII. Protein\nIII. RNA"
    )


def test_data_dir_may_be_the_mmlu_folder(shared_data: Path) -> None:
    a = load_dataset("mmlu", subjects=["anatomy"], data_dir=shared_data)
    b = load_dataset("mmlu", subjects=["anatomy"], data_dir=shared_data / "mmlu")
    assert a.examples == b.examples and len(a.examples) == 135
    assert b.source == f"data-dir:{(shared_data / 'mmlu').resolve()}"


def test_env_var_is_used(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYERCAL_DATA_DIR", str(shared_data))
    ds = load_dataset("mmlu", subjects=["virology"])
    assert ds.source.startswith("data-dir:") and len(ds.examples) == 166


def test_data_dir_wins_over_env_var(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--data-dir is used even when LAYERCAL_DATA_DIR points at other (here: truncated) data."""
    path = _copy_subject(shared_data, tmp_path, "virology")
    path.write_text("".join(path.read_text(encoding="utf-8").splitlines(True)[:3]), "utf-8")
    monkeypatch.setenv("LAYERCAL_DATA_DIR", str(tmp_path))
    assert len(load_dataset("mmlu", subjects=["virology"]).examples) == 3  # the env var's copy
    ds = load_dataset("mmlu", subjects=["virology"], data_dir=shared_data)
    assert len(ds.examples) == 166
    assert ds.source == f"data-dir:{(shared_data / 'mmlu').resolve()}"


def test_missing_data_dir_is_an_error(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DatasetError, match="not a directory"):
        load_dataset("mmlu", data_dir=tmp_path / "nope")
    with pytest.raises(DatasetError, match=r"mmlu/test"):
        load_dataset("mmlu", data_dir=tmp_path)
    _copy_subject(shared_data, tmp_path, "anatomy")
    with pytest.raises(DatasetError, match=r"virology_test\.csv"):
        load_dataset("mmlu", subjects=["anatomy", "virology"], data_dir=tmp_path)
    with pytest.raises(DatasetError, match=r"truthfulqa/mc_task\.json"):
        load_dataset("truthfulqa-mc1", data_dir=tmp_path)
    # an env var pointing at a folder without the data: no silent fall-back to the hub
    monkeypatch.setenv("LAYERCAL_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match=r"virology_test\.csv"):
        load_dataset("mmlu", subjects=["virology"])


def test_malformed_rows_name_file_and_row(tmp_path: Path, shared_data: Path) -> None:
    path = _copy_subject(shared_data, tmp_path, "anatomy")
    rows = _raw_rows(path)
    broken = [*rows[:2], rows[2][:5], *rows[3:]]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(broken)
    with pytest.raises(DatasetError, match=r"anatomy_test\.csv, row 3 \(line 3\).*found 5") as err:
        load_dataset("mmlu", subjects=["anatomy"], data_dir=tmp_path)
    assert str(path) in str(err.value)

    rows[6][5] = "E"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    with pytest.raises(DatasetError, match=r"row 7 .*'E' is not one of A, B, C, D"):
        load_dataset("mmlu", subjects=["anatomy"], data_dir=tmp_path)


def test_subject_selection_errors(shared_data: Path) -> None:
    with pytest.raises(DatasetError, match="Did you mean: anatomy"):
        load_dataset("mmlu", subjects=["anatomyy"], data_dir=shared_data)
    with pytest.raises(DatasetError, match="category='humanities'"):
        load_dataset("mmlu", subjects=["humanities"], data_dir=shared_data)
    with pytest.raises(DatasetError, match="humanities, stem, social_sciences, other"):
        load_dataset("mmlu", category="science", data_dir=shared_data)
    with pytest.raises(DatasetError, match="not both"):
        load_dataset("mmlu", subjects=["anatomy"], category="stem", data_dir=shared_data)
    with pytest.raises(DatasetError, match=r"pass \['anatomy'\]"):
        load_dataset("mmlu", subjects="anatomy", data_dir=shared_data)
    ds = load_dataset("mmlu", subjects=["virology", "High School US History"], data_dir=shared_data)
    assert ds.subjects == ("high_school_us_history", "virology")
    assert [ex.subject for ex in ds.examples[:1]] == ["high_school_us_history"]
    assert len(ds.examples) == 204 + 166


def test_unknown_dataset_name(shared_data: Path) -> None:
    with pytest.raises(DatasetError, match="mmlu, truthfulqa-mc1") as err:
        load_dataset("mmlu-pro", data_dir=shared_data)
    assert "Did you mean: mmlu" in str(err.value)
    with pytest.raises(DatasetError, match="not found"):
        load_dataset("does/not/exist.csv")


def test_shots(shared_data: Path) -> None:
    ds = load_dataset("mmlu", subjects=["anatomy", "virology"], shots=3, data_dir=shared_data)
    assert set(ds.shots) == {"anatomy", "virology"}
    dev = _raw_rows(shared_data / "mmlu" / "dev" / "anatomy_dev.csv")
    anatomy = ds.shots["anatomy"]
    assert [ex.example_id for ex in anatomy] == [f"mmlu/dev/anatomy/{i:04d}" for i in range(3)]
    assert [ex.question for ex in anatomy] == [r[0] for r in dev[:3]]
    assert anatomy[0].label == "ABCD".index(dev[0][5]) == 3
    assert ds.info["shots"] == 3
    zero = load_dataset("mmlu", subjects=["anatomy", "virology"], data_dir=shared_data)
    assert dict(zero.shots) == {} and zero.examples == ds.examples
    assert zero.content_hash() != ds.content_hash()
    with pytest.raises(DatasetError, match="0 to 5"):
        load_dataset("mmlu", subjects=["anatomy"], shots=6, data_dir=shared_data)


def test_limit_is_seeded_and_in_order(mmlu_test: MCDataset, shared_data: Path) -> None:
    a = load_dataset("mmlu", limit=50, seed=1, data_dir=shared_data)
    b = load_dataset("mmlu", limit=50, seed=1, data_dir=shared_data)
    c = load_dataset("mmlu", limit=50, seed=2, data_dir=shared_data)
    assert a.examples == b.examples and a.content_hash() == b.content_hash()
    assert len(a.examples) == 50 and a.examples != c.examples
    position = {ex.example_id: i for i, ex in enumerate(mmlu_test.examples)}
    order = [position[ex.example_id] for ex in a.examples]
    assert order == sorted(order)
    assert len({ex.subject for ex in a.examples}) > 10  # a sample across subjects, not a prefix
    assert a.info["limit"] == 50 and a.info["seed"] == 1 and a.info["n_available"] == 14042
    everything = load_dataset("mmlu", subjects=["anatomy"], limit=10_000, data_dir=shared_data)
    assert len(everything.examples) == 135
    with pytest.raises(DatasetError, match="positive int"):
        load_dataset("mmlu", limit=0, data_dir=shared_data)


def test_content_hash_ignores_source(shared_data: Path) -> None:
    a = load_dataset("mmlu", subjects=["anatomy"], data_dir=shared_data)
    b = load_dataset("mmlu", subjects=["anatomy"], data_dir=shared_data / "mmlu")
    assert a.content_hash() == b.content_hash() and len(a.content_hash()) == 64


# --- TruthfulQA MC1 -----------------------------------------------------------------------


def test_truthfulqa(shared_data: Path) -> None:
    raw = json.loads((shared_data / "truthfulqa" / "mc_task.json").read_text(encoding="utf-8"))
    ds = load_dataset("truthfulqa-mc1", data_dir=shared_data)
    assert len(ds.examples) == 817 and ds.split == "validation"
    assert (
        ds.subjects == ("truthfulqa",)
        and ds.examples[42].example_id == "truthfulqa-mc1/validation/0042"
    )
    for ex, row in zip(ds.examples, raw):
        truth = next(t for t, v in row["mc1_targets"].items() if v == 1)
        assert ex.question == row["question"]
        assert ex.choices[ex.label] == truth
        assert sorted(ex.choices) == sorted(row["mc1_targets"])
    counts = {len(ex.choices) for ex in ds.examples}
    assert min(counts) == 2 and max(counts) == ds.max_choices == 13
    labels = [ex.label for ex in ds.examples]
    assert sum(label == 0 for label in labels) < 400  # shuffled: the truth is not always first
    again = load_dataset("truthfulqa-mc1", split="test", data_dir=shared_data)
    assert again.examples == ds.examples and again.content_hash() == ds.content_hash()
    other = load_dataset("truthfulqa-mc1", shuffle_seed=1, data_dir=shared_data)
    assert other.examples != ds.examples
    assert [ex.choices[ex.label] for ex in other.examples] == [
        ex.choices[ex.label] for ex in ds.examples
    ]
    assert ds.info["shuffle_seed"] == 0 and other.info["shuffle_seed"] == 1
    # a sample keeps each question's option order (the shuffle is per question index)
    sample = load_dataset("truthfulqa-mc1", limit=30, data_dir=shared_data)
    by_id = {ex.example_id: ex for ex in ds.examples}
    assert all(by_id[ex.example_id] == ex for ex in sample.examples)
    with pytest.raises(DatasetError, match="single split"):
        load_dataset("truthfulqa-mc1", split="dev", data_dir=shared_data)
    with pytest.raises(DatasetError, match="few-shot"):
        load_dataset("truthfulqa-mc1", shots=1, data_dir=shared_data)


# --- hub layout, read through `datasets` without network ---------------------------------


def _write_hub(folder: Path, config: str, splits: dict[str, pa.Table]) -> None:
    lines = ["---", "configs:", f"- config_name: {config}", "  data_files:"]
    for split, table in splits.items():
        (folder / config).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / config / f"{split}-00000-of-00001.parquet")
        lines += [f"  - split: {split}", f"    path: {config}/{split}-*.parquet"]
    (folder / "README.md").write_text(
        "\n".join([*lines, "---", "# local copy", ""]), encoding="utf-8"
    )


def _mmlu_hub_table(shared_data: Path, split: str, subjects: list[str]) -> pa.Table:
    cols: dict[str, list] = {"question": [], "subject": [], "choices": [], "answer": []}
    for subject in subjects:  # deliberately not alphabetical
        for row in _raw_rows(shared_data / "mmlu" / split / f"{subject}_{split}.csv"):
            cols["question"].append(row[0])
            cols["subject"].append(subject)
            cols["choices"].append(row[1:5])
            cols["answer"].append("ABCD".index(row[5]))
    return pa.table(cols)


def test_mmlu_hub_layout_matches_csv(shared_data: Path, tmp_path: Path, no_env: None) -> None:
    hub = tmp_path / "mmlu-hub"
    in_file = ["virology", "anatomy", "college_physics", "formal_logic"]
    _write_hub(
        hub,
        "all",
        {
            "test": _mmlu_hub_table(shared_data, "test", in_file),
            "validation": _mmlu_hub_table(shared_data, "val", in_file),
            "dev": _mmlu_hub_table(shared_data, "dev", in_file),
        },
    )
    subjects = ["virology", "college_physics", "anatomy"]
    from_hub = load_dataset("mmlu", subjects=subjects, hub_repo=str(hub), shots=2)
    from_csv = load_dataset("mmlu", subjects=subjects, data_dir=shared_data, shots=2)
    assert from_hub.source == f"hub:{hub}"
    assert from_hub.examples == from_csv.examples and dict(from_hub.shots) == dict(from_csv.shots)
    assert from_hub.content_hash() == from_csv.content_hash()
    val_hub = load_dataset("mmlu", split="val", subjects=subjects, hub_repo=str(hub))
    val_csv = load_dataset("mmlu", split="val", subjects=subjects, data_dir=shared_data)
    assert val_hub.content_hash() == val_csv.content_hash()
    with pytest.raises(DatasetError, match="no rows for subject"):
        load_dataset("mmlu", subjects=["nutrition"], hub_repo=str(hub))


def test_truthfulqa_hub_layout_matches_json(
    shared_data: Path, tmp_path: Path, no_env: None
) -> None:
    raw = json.loads((shared_data / "truthfulqa" / "mc_task.json").read_text(encoding="utf-8"))

    def targets(key: str) -> list[dict]:
        return [{"choices": list(r[key]), "labels": list(r[key].values())} for r in raw]

    table = pa.table(
        {
            "question": [r["question"] for r in raw],
            "mc1_targets": targets("mc1_targets"),
            "mc2_targets": targets("mc2_targets"),
        }
    )
    hub = tmp_path / "tqa-hub"
    _write_hub(hub, "multiple_choice", {"validation": table})
    from_hub = load_dataset("truthfulqa-mc1", hub_repo=str(hub))
    from_json = load_dataset("truthfulqa-mc1", data_dir=shared_data)
    assert len(from_hub.examples) == 817 and from_hub.examples == from_json.examples
    assert from_hub.content_hash() == from_json.content_hash()


def test_unreachable_hub_is_a_clear_error(tmp_path: Path, no_env: None) -> None:
    with pytest.raises(DatasetError, match="data_dir"):
        load_dataset("mmlu", subjects=["anatomy"], hub_repo=str(tmp_path / "no-such-copy"))


# --- generic question files ---------------------------------------------------------------


@pytest.fixture
def anatomy(shared_data: Path) -> MCDataset:
    return load_dataset("mmlu", subjects=["anatomy"], limit=20, data_dir=shared_data)


def _file_rows(ds: MCDataset) -> list[dict]:
    return [
        {"question": ex.question, "choices": list(ex.choices), "answer": ex.label}
        for ex in ds.examples
    ]


def _same_questions(loaded: MCDataset, source: MCDataset) -> None:
    assert [(e.question, e.choices, e.label) for e in loaded.examples] == [
        (e.question, e.choices, e.label) for e in source.examples
    ]


def test_file_csv_letter_columns(anatomy: MCDataset, tmp_path: Path) -> None:
    path = tmp_path / "my_quiz.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["question", "A", "B", "C", "D", "answer", "subject"])
        for ex in anatomy.examples:
            w.writerow([ex.question, *ex.choices, "ABCD"[ex.label], "anatomy"])
    ds = load_dataset(str(path))
    _same_questions(ds, anatomy)
    assert ds.name == "file" and ds.source == f"file:{path.resolve()}"
    assert ds.examples[0].example_id == "file/my_quiz/0000" and ds.examples[0].category == "none"
    assert ds.subjects == ("anatomy",)


def test_file_csv_json_choices_and_int_answers(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    pl.DataFrame(
        {
            "question": ["2+2?", "Colour of the sky?"],
            "choices": [json.dumps(["3", "4"]), json.dumps(["red", "None", "blue"])],
            "answer": ["1", "2"],
            "id": ["x1", "x2"],
            "category": ["math", "nature"],
        }
    ).write_csv(path)
    ds = load_dataset(path)
    assert [ex.choices for ex in ds.examples] == [("3", "4"), ("red", "None", "blue")]
    assert [ex.label for ex in ds.examples] == [1, 2] and ds.max_choices == 3
    assert [ex.example_id for ex in ds.examples] == ["x1", "x2"]
    assert [ex.subject for ex in ds.examples] == ["q", "q"]
    nature = load_dataset(path, category="nature")
    assert [ex.example_id for ex in nature.examples] == ["x2"]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".json"])
def test_file_list_choices_round_trip(anatomy: MCDataset, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"quiz{suffix}"
    df = pl.DataFrame(_file_rows(anatomy))
    if suffix == ".jsonl":
        df.write_ndjson(path)
    elif suffix == ".parquet":
        df.write_parquet(path)
    else:
        path.write_text(json.dumps(_file_rows(anatomy)), encoding="utf-8")
    ds = load_dataset(path, limit=5, seed=3)
    full = load_dataset(path)
    _same_questions(full, anatomy)
    assert len(ds.examples) == 5 and set(ds.examples) <= set(full.examples)


def test_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "q", "choices": ["a", "b"]}) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"lacks required column\(s\) \['answer'\]"):
        load_dataset(path)
    rows = [
        {"question": "q1", "choices": ["a", "b"], "answer": "A"},
        {"question": "q2", "choices": ["a", "b"], "answer": "C"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    with pytest.raises(
        DatasetError, match=r"bad\.jsonl, row 2: answer 'C' is outside the 2 choices"
    ):
        load_dataset(path)
    no_choices = tmp_path / "nochoices.csv"
    no_choices.write_text("question,answer\nq,A\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="row 1: no options found"):
        load_dataset(no_choices)
    with pytest.raises(DatasetError, match="few-shot"):
        load_dataset(no_choices, shots=1)
    other = tmp_path / "notes.txt"
    other.write_text("x", encoding="utf-8")
    with pytest.raises(DatasetError, match="unsupported file type"):
        load_dataset(other)


def test_no_torch_import() -> None:
    # a bare `extract` package object, so that only these modules (not the package __init__,
    # which the model stage owns) are checked
    root = REPO
    code = (
        "import sys, types; pkg = types.ModuleType('extract'); "
        f"pkg.__path__ = [{str(root / 'extract')!r}]; sys.modules['extract'] = pkg; "
        "import extract.data.load, extract.data.prompts; "
        "bad = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)
