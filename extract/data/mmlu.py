"""MMLU (Hendrycks et al., 2021): subjects, categories and the two readers (CSV folder, hub).

CSV layout of the official `data.tar`: `mmlu/{dev,val,test}/<subject>_<split>.csv`, no header,
columns `question, A, B, C, D, answer` with answer a letter A-D. Some fields hold newlines and
some files use CRLF endings, hence `csv.reader` over a file opened with `newline=""`.

Both readers return the same examples: subjects in alphabetical order, rows in file order, ids
`mmlu/<split>/<subject>/<row:04d>` with the 0-based row index within the subject's file.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from extract.data.examples import DatasetError, MCExample, as_name_list, did_you_mean, normalise_key
from extract.data.hub import load_hub_columns, require_columns

# Hendrycks et al. 2021 (github.com/hendrycks/test, categories.py): subject -> subcategory ->
# category. lm-eval-harness differs in one subject (it files anatomy under stem, not other).
CATEGORY_MAP_NAME = "hendrycks2021"
_SUBCATEGORY_TO_CATEGORY = {
    "physics": "stem",
    "chemistry": "stem",
    "biology": "stem",
    "computer science": "stem",
    "math": "stem",
    "engineering": "stem",
    "history": "humanities",
    "philosophy": "humanities",
    "law": "humanities",
    "politics": "social_sciences",
    "culture": "social_sciences",
    "economics": "social_sciences",
    "geography": "social_sciences",
    "psychology": "social_sciences",
    "other": "other",
    "business": "other",
    "health": "other",
}
_SUBCATEGORIES = {
    "abstract_algebra": "math",
    "anatomy": "health",
    "astronomy": "physics",
    "business_ethics": "business",
    "clinical_knowledge": "health",
    "college_biology": "biology",
    "college_chemistry": "chemistry",
    "college_computer_science": "computer science",
    "college_mathematics": "math",
    "college_medicine": "health",
    "college_physics": "physics",
    "computer_security": "computer science",
    "conceptual_physics": "physics",
    "econometrics": "economics",
    "electrical_engineering": "engineering",
    "elementary_mathematics": "math",
    "formal_logic": "philosophy",
    "global_facts": "other",
    "high_school_biology": "biology",
    "high_school_chemistry": "chemistry",
    "high_school_computer_science": "computer science",
    "high_school_european_history": "history",
    "high_school_geography": "geography",
    "high_school_government_and_politics": "politics",
    "high_school_macroeconomics": "economics",
    "high_school_mathematics": "math",
    "high_school_microeconomics": "economics",
    "high_school_physics": "physics",
    "high_school_psychology": "psychology",
    "high_school_statistics": "math",
    "high_school_us_history": "history",
    "high_school_world_history": "history",
    "human_aging": "health",
    "human_sexuality": "culture",
    "international_law": "law",
    "jurisprudence": "law",
    "logical_fallacies": "philosophy",
    "machine_learning": "computer science",
    "management": "business",
    "marketing": "business",
    "medical_genetics": "health",
    "miscellaneous": "other",
    "moral_disputes": "philosophy",
    "moral_scenarios": "philosophy",
    "nutrition": "health",
    "philosophy": "philosophy",
    "prehistory": "history",
    "professional_accounting": "other",
    "professional_law": "law",
    "professional_medicine": "health",
    "professional_psychology": "psychology",
    "public_relations": "politics",
    "security_studies": "politics",
    "sociology": "culture",
    "us_foreign_policy": "politics",
    "virology": "health",
    "world_religions": "philosophy",
}
MMLU_CATEGORIES: dict[str, str] = {
    s: _SUBCATEGORY_TO_CATEGORY[sub] for s, sub in sorted(_SUBCATEGORIES.items())
}
MMLU_SUBJECTS: tuple[str, ...] = tuple(sorted(MMLU_CATEGORIES))
CATEGORY_NAMES: tuple[str, ...] = ("humanities", "stem", "social_sciences", "other")

# canonical split name -> folder/file suffix of the CSV release; the hub uses the canonical names
SPLIT_ALIASES = {"test": "test", "validation": "validation", "val": "validation", "dev": "dev"}
CSV_SPLIT = {"test": "test", "validation": "val", "dev": "dev"}
MAX_SHOTS = 5
_LETTERS = "ABCD"


def canonical_split(split: str) -> str:
    """'test' | 'validation' | 'dev' for an MMLU split name ('val' is accepted)."""
    try:
        return SPLIT_ALIASES[split]
    except KeyError:
        raise DatasetError(
            f"unknown MMLU split {split!r}; use one of 'test', 'validation' (or 'val'), 'dev'."
        ) from None


def select_subjects(subjects: Sequence[str] | None, category: str | None) -> tuple[str, ...]:
    """Sorted MMLU subjects named by `subjects`, or in `category`, or all 57 when both are None.

    Names are matched after lower-casing and mapping spaces/hyphens to underscores.
    """
    if subjects is not None and category is not None:
        raise DatasetError(
            "pass either subjects=[...] or category=..., not both; "
            "to take part of a category, list its subjects (see MMLU_CATEGORIES)."
        )
    if category is not None:
        cat = normalise_key(category)
        if cat not in CATEGORY_NAMES:
            raise DatasetError(
                f"unknown MMLU category {category!r}; use one of {', '.join(CATEGORY_NAMES)}."
            )
        return tuple(s for s in MMLU_SUBJECTS if MMLU_CATEGORIES[s] == cat)
    if subjects is None:
        return MMLU_SUBJECTS
    chosen = set()
    for name in as_name_list(subjects, "subjects"):
        key = normalise_key(name)
        if key in MMLU_CATEGORIES:
            chosen.add(key)
            continue
        hint = did_you_mean(key, MMLU_SUBJECTS)
        if key in CATEGORY_NAMES:
            hint += f" {name!r} is a category: pass category={key!r}."
        raise DatasetError(
            f"unknown MMLU subject {name!r}.{hint} All 57 names are in extract.data.load.MMLU_SUBJECTS."
        )
    return tuple(sorted(chosen))


def find_mmlu_dir(root: Path) -> Path:
    """The folder holding dev/ val/ test/: `root/mmlu` or `root` itself."""
    if (root / "mmlu").is_dir():
        return root / "mmlu"
    if any((root / d).is_dir() for d in CSV_SPLIT.values()):
        return root
    raise DatasetError(
        f"no MMLU data under {root}: expected {root / 'mmlu' / 'test'}/<subject>_test.csv "
        "(the official data.tar layout). Point data_dir (or LAYERCAL_DATA_DIR) at the folder "
        "holding mmlu/, or at mmlu/ itself."
    )


def _example(
    split: str, subject: str, row: int, question: str, choices: Sequence[str], label: int
) -> MCExample:
    return MCExample(
        example_id=f"mmlu/{split}/{subject}/{row:04d}",
        subject=subject,
        category=MMLU_CATEGORIES[subject],
        question=question,
        choices=tuple(choices),
        label=label,
    )


def read_csv_subject(path: Path, subject: str, split: str) -> list[MCExample]:
    """Examples of one `<subject>_<split>.csv` file, in file order (blank lines skipped)."""
    out: list[MCExample] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        start_line = 1
        for fields in reader:
            where = f"{path}, row {len(out) + 1} (line {start_line})"
            start_line = reader.line_num + 1
            if not fields:
                continue
            if len(fields) != 6:
                raise DatasetError(
                    f"malformed MMLU row in {where}: expected 6 columns (question, A, B, C, D, "
                    f"answer), found {len(fields)}. Fix or re-download the file."
                )
            answer = fields[5].strip()
            if len(answer) != 1 or answer not in _LETTERS:
                raise DatasetError(
                    f"malformed MMLU row in {where}: answer {fields[5]!r} is not one of A, B, C, D. "
                    "Fix or re-download the file."
                )
            out.append(
                _example(split, subject, len(out), fields[0], fields[1:5], _LETTERS.index(answer))
            )
    return out


def load_mmlu_dir(mmlu_dir: Path, split: str, subjects: Sequence[str]) -> list[MCExample]:
    """Examples of `subjects` (in the given order) from the CSV release in `mmlu_dir`."""
    out: list[MCExample] = []
    folder = CSV_SPLIT[split]
    for subject in subjects:
        path = mmlu_dir / folder / f"{subject}_{folder}.csv"
        if not path.is_file():
            raise DatasetError(
                f"missing MMLU file {path}; the data folder must hold the official data.tar layout "
                f"mmlu/{folder}/<subject>_{folder}.csv (see ../shared/data/README.md)."
            )
        out.extend(read_csv_subject(path, subject, split))
    return out


def load_mmlu_hub(repo: str, split: str, subjects: Sequence[str]) -> list[MCExample]:
    """Examples of `subjects` from the hub's `all` config (columns question, subject, choices, answer)."""
    cols = load_hub_columns(repo, "all", split)
    require_columns(cols, ("question", "subject", "choices", "answer"), repo)
    wanted = set(subjects)
    by_subject: dict[str, list[MCExample]] = {s: [] for s in subjects}
    for i, (q, subj, choices, answer) in enumerate(
        zip(cols["question"], cols["subject"], cols["choices"], cols["answer"])
    ):
        if subj not in wanted:
            continue
        if len(choices) != 4 or isinstance(answer, bool) or answer not in range(4):
            raise DatasetError(
                f"malformed row {i} of hub dataset {repo!r} ({split}): expected 4 choices and "
                f"answer in 0-3, got {len(choices)} choices and answer {answer!r}."
            )
        rows = by_subject[subj]
        rows.append(_example(split, subj, len(rows), q, [str(c) for c in choices], int(answer)))
    empty = [s for s in subjects if not by_subject[s]]
    if empty:
        raise DatasetError(
            f"hub dataset {repo!r} ({split}) has no rows for subject(s) {empty}; "
            "check hub_repo=..., or choose other subjects."
        )
    return [ex for s in subjects for ex in by_subject[s]]
