"""Multiple-choice benchmarks as `MCDataset`s: MMLU, TruthfulQA MC1, or a local question file.

    ds = load_dataset("mmlu", category="humanities", data_dir="../shared/data")
    len(ds.examples), ds.max_choices  # 4705 questions, K = 4 options

Where the data comes from (first match wins):
1. `data_dir=` — a folder holding `mmlu/` (official CSV layout `mmlu/{dev,val,test}/
   <subject>_<split>.csv`) and `truthfulqa/mc_task.json`; it may also be the `mmlu/` or
   `truthfulqa/` folder itself. Missing files are an error, never a silent fall-back.
2. `hub_repo=` — a Hugging Face hub id or a local folder in the hub layout.
3. the environment variable `LAYERCAL_DATA_DIR`, read like `data_dir`.
4. the hub defaults `cais/mmlu` (config `all`) and `truthfulqa/truthful_qa` (config
   `multiple_choice`), through the `datasets` library.
Both sources give identical examples, ids and `content_hash()`.

Any other `name` is read as a path to a local .csv/.jsonl/.json/.parquet file (see `extract.data.tabular`).
This module never imports torch or transformers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from extract.data.examples import (
    DatasetError,
    MCDataset,
    MCExample,
    as_name_list,
    check_limit,
    did_you_mean,
    sample_indices,
)
from extract.data.mmlu import (
    CATEGORY_MAP_NAME,
    CATEGORY_NAMES,
    MAX_SHOTS,
    MMLU_CATEGORIES,
    MMLU_SUBJECTS,
    canonical_split,
    find_mmlu_dir,
    load_mmlu_dir,
    load_mmlu_hub,
    select_subjects,
)
from extract.data.sampling import PerSubject, parse_per_subject, per_subject_indices
from extract.data.tabular import SUFFIXES, load_table
from extract.data.truthfulqa import find_mc_file, load_truthfulqa_file, load_truthfulqa_hub

__all__ = [
    "CATEGORY_NAMES",
    "DATASET_NAMES",
    "DATA_DIR_ENV",
    "DatasetError",
    "MCDataset",
    "MCExample",
    "MMLU_CATEGORIES",
    "MMLU_SUBJECTS",
    "load_dataset",
]

DATA_DIR_ENV = "LAYERCAL_DATA_DIR"
DATASET_NAMES: tuple[str, ...] = ("mmlu", "truthfulqa-mc1")
_ALIASES = {
    "mmlu": "mmlu",
    "truthfulqa-mc1": "truthfulqa-mc1",
    "truthfulqa_mc1": "truthfulqa-mc1",
    "truthfulqa": "truthfulqa-mc1",
}
_HUB_DEFAULTS = {"mmlu": "cais/mmlu", "truthfulqa-mc1": "truthfulqa/truthful_qa"}

# what a loader hands back before sampling: examples, shots, subjects, source, split, extra info
_Loaded = tuple[
    list[MCExample], dict[str, tuple[MCExample, ...]], tuple[str, ...], str, str, dict[str, Any]
]


def load_dataset(
    name: str | os.PathLike[str],
    *,
    split: str = "test",
    subjects: Sequence[str] | None = None,
    category: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    shots: int = 0,
    hub_repo: str | None = None,
    shuffle_seed: int | None = None,
    per_subject: str | PerSubject | None = None,
) -> MCDataset:
    """Load a multiple-choice benchmark.

    name: "mmlu", "truthfulqa-mc1", or a path to a .csv/.jsonl/.json/.parquet question file.
    split: MMLU "test", "validation" (or "val") or "dev". TruthfulQA has one split, recorded as
        "validation"; "test" and "validation" both select it. Files: recorded as given.
    subjects / category: alternatives selecting MMLU subjects (sorted alphabetically in the
        result) or a category (humanities, stem, social_sciences, other); for files they filter
        on the `subject` / `category` columns.
    limit, seed: keep a random sample of `limit` examples (numpy default_rng(seed)), in dataset
        order; None or limit >= size keeps everything.
    shots: k <= 5 few-shot exemplars per subject, the first k rows of MMLU's dev split.
    per_subject: at most N examples of each subject, e.g. "40,humanities=120" (a category's or
        subject's own entry wins over the bare default; "all" keeps them all); seeded per subject
        by `seed`, applied before `limit` (see extract/data/sampling.py).
    shuffle_seed: TruthfulQA option shuffle, `random.Random(f"{shuffle_seed}:{index}")` for
        question `index`; None (default) uses `seed`.
    """
    check_limit(limit)
    caps = None if per_subject is None else parse_per_subject(per_subject)
    if isinstance(shots, bool) or not isinstance(shots, int) or not 0 <= shots <= MAX_SHOTS:
        raise DatasetError(
            f"shots must be an int from 0 to {MAX_SHOTS} (MMLU's dev split has 5 rows per "
            f"subject), got {shots!r}."
        )
    if data_dir is not None and hub_repo is not None:
        raise DatasetError("pass either data_dir=... or hub_repo=..., not both.")
    key = _ALIASES.get(str(name).strip().lower())
    if key == "mmlu":
        loaded = _load_mmlu(split, subjects, category, data_dir, hub_repo, shots)
    elif key == "truthfulqa-mc1":
        shuffle = seed if shuffle_seed is None else shuffle_seed
        loaded = _load_truthfulqa(split, subjects, category, data_dir, hub_repo, shots, shuffle)
    else:
        loaded = _load_file(_as_file(name), split, subjects, category, shots)
    examples, shot_map, chosen, source, split_name, extra = loaded
    n_available = len(examples)
    if caps is not None:
        examples = [examples[i] for i in per_subject_indices(examples, caps, seed)]
    keep = sample_indices(len(examples), limit, seed)
    selected = tuple(examples[i] for i in keep)
    ds_name = key or "file"
    info: dict[str, Any] = {
        "name": ds_name,
        "split": split_name,
        "subjects": list(chosen),
        "category": None,
        "limit": limit,
        "per_subject": caps,
        "seed": seed,
        "shots": shots,
        "shuffle_seed": None,
        "category_map": None,
        "source": source,
        "n_examples": len(selected),
        "n_available": n_available,
    }
    info.update(extra)
    return MCDataset(
        name=ds_name,
        split=split_name,
        subjects=chosen,
        source=source,
        examples=selected,
        shots=shot_map,
        info=info,
    )


def _local_root(data_dir: str | os.PathLike[str] | None, hub_repo: str | None) -> Path | None:
    """The local data folder to read, or None to read from the hub."""
    if data_dir is not None:
        root, origin = Path(data_dir).expanduser(), "data_dir"
    elif hub_repo is not None:
        return None
    elif os.environ.get(DATA_DIR_ENV):
        root, origin = Path(os.environ[DATA_DIR_ENV]).expanduser(), DATA_DIR_ENV
    else:
        return None
    if not root.is_dir():
        raise DatasetError(
            f"{origin}={str(root)!r} is not a directory; point it at the folder holding mmlu/ "
            f"and truthfulqa/, or unset it (and pass no data_dir) to read from the hub."
        )
    return root.resolve()


def _load_mmlu(
    split: str,
    subjects: Sequence[str] | None,
    category: str | None,
    data_dir: str | os.PathLike[str] | None,
    hub_repo: str | None,
    shots: int,
) -> _Loaded:
    split_name = canonical_split(split)
    chosen = select_subjects(subjects, category)
    if shots and split_name == "dev":
        raise DatasetError(
            "shots come from the dev split; use split='test' or 'validation' with shots."
        )
    root = _local_root(data_dir, hub_repo)
    if root is not None:
        mmlu_dir = find_mmlu_dir(root)
        examples = load_mmlu_dir(mmlu_dir, split_name, chosen)
        dev = load_mmlu_dir(mmlu_dir, "dev", chosen) if shots else []
        source = f"data-dir:{mmlu_dir}"
    else:
        repo = hub_repo or _HUB_DEFAULTS["mmlu"]
        examples = load_mmlu_hub(repo, split_name, chosen)
        dev = load_mmlu_hub(repo, "dev", chosen) if shots else []
        source = f"hub:{repo}"
    shot_map: dict[str, tuple[MCExample, ...]] = {}
    for subject in chosen if shots else ():
        exemplars = tuple(ex for ex in dev if ex.subject == subject)[:shots]
        if len(exemplars) < shots:
            raise DatasetError(
                f"MMLU dev split has only {len(exemplars)} rows for {subject!r}, fewer than "
                f"shots={shots}; lower shots."
            )
        shot_map[subject] = exemplars
    cat = None if category is None else MMLU_CATEGORIES[chosen[0]]
    extra = {"category": cat, "category_map": CATEGORY_MAP_NAME}
    return examples, shot_map, chosen, source, split_name, extra


def _load_truthfulqa(
    split: str,
    subjects: Sequence[str] | None,
    category: str | None,
    data_dir: str | os.PathLike[str] | None,
    hub_repo: str | None,
    shots: int,
    shuffle_seed: int,
) -> _Loaded:
    if split not in ("validation", "test"):
        raise DatasetError(
            f"TruthfulQA MC1 has a single split of 817 questions ('validation', also accepted as "
            f"'test'), got split={split!r}; pass split='validation'."
        )
    if subjects is not None and as_name_list(subjects, "subjects") != ["truthfulqa"]:
        raise DatasetError(
            f"TruthfulQA has the single subject 'truthfulqa'; got subjects={subjects!r}."
        )
    if category not in (None, "truthfulqa"):
        raise DatasetError(
            f"TruthfulQA has the single category 'truthfulqa'; got category={category!r}."
        )
    if shots:
        raise DatasetError("TruthfulQA has no few-shot split; use shots=0.")
    root = _local_root(data_dir, hub_repo)
    if root is not None:
        path = find_mc_file(root)
        examples = load_truthfulqa_file(path, shuffle_seed)
        source = f"data-dir:{path.parent}"
    else:
        repo = hub_repo or _HUB_DEFAULTS["truthfulqa-mc1"]
        examples = load_truthfulqa_hub(repo, shuffle_seed)
        source = f"hub:{repo}"
    extra = {"category": category, "shuffle_seed": shuffle_seed}
    return examples, {}, ("truthfulqa",), source, "validation", extra


def _as_file(name: str | os.PathLike[str]) -> Path:
    """A local question file named by `name`, or an error listing what `name` may be."""
    path = Path(name).expanduser()
    if path.suffix.lower() in SUFFIXES:
        if not path.is_file():
            raise DatasetError(f"question file {str(path)!r} not found; check the path.")
        return path.resolve()
    if path.is_file():
        raise DatasetError(
            f"unsupported file type {path.suffix!r} for {path}; use one of {', '.join(SUFFIXES)}."
        )
    raise DatasetError(
        f"unknown dataset {str(name)!r}; use one of {', '.join(DATASET_NAMES)}, or a path to a "
        f"{'/'.join(SUFFIXES)} question file.{did_you_mean(str(name).lower(), DATASET_NAMES)}"
    )


def _load_file(
    path: Path, split: str, subjects: Sequence[str] | None, category: str | None, shots: int
) -> _Loaded:
    if shots:
        raise DatasetError("few-shot exemplars come from MMLU's dev split; use shots=0 for a file.")
    if subjects is not None and category is not None:
        raise DatasetError("pass either subjects=[...] or category=..., not both.")
    examples = load_table(path)
    if subjects is not None:
        examples = _filter(examples, "subject", as_name_list(subjects, "subjects"), path)
    if category is not None:
        examples = _filter(examples, "category", [category], path)
    chosen = tuple(sorted({ex.subject for ex in examples}))
    extra = {"category": category}
    return examples, {}, chosen, f"file:{path}", split, extra


def _filter(
    examples: list[MCExample], field: str, wanted: list[str], path: Path
) -> list[MCExample]:
    present = sorted({getattr(ex, field) for ex in examples})
    for value in wanted:
        if value not in present:
            raise DatasetError(
                f"{path} has no {field} {value!r}.{did_you_mean(value, present)} "
                f"Values present: {', '.join(present[:20])}{' ...' if len(present) > 20 else ''}."
            )
    return [ex for ex in examples if getattr(ex, field) in wanted]
