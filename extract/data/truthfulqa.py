"""TruthfulQA MC1 (Lin et al., 2022): 817 questions, one true option, listed first in the file.

Sources: `truthfulqa/mc_task.json` (a list of {question, mc1_targets: {option text: 0/1}, ...}),
or the hub's `truthful_qa` `multiple_choice` config (mc1_targets = {choices: [...], labels:
[...]}). Options are shuffled per question with `random.Random(f"{shuffle_seed}:{index}")`, so the
order of question `index` does not depend on which other questions are loaded.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from extract.data.examples import DatasetError, MCExample
from extract.data.hub import load_hub_columns, require_columns

SUBJECT = "truthfulqa"
SPLIT = "validation"
MC_FILE = "mc_task.json"


def find_mc_file(root: Path) -> Path:
    """`root/truthfulqa/mc_task.json`, or `root/mc_task.json` when root is that folder."""
    for path in (root / "truthfulqa" / MC_FILE, root / MC_FILE):
        if path.is_file():
            return path
    raise DatasetError(
        f"no TruthfulQA data under {root}: expected {root / 'truthfulqa' / MC_FILE}. Point "
        "data_dir (or LAYERCAL_DATA_DIR) at the folder holding truthfulqa/ (see "
        "../shared/data/README.md)."
    )


def _targets(raw: Any, where: str) -> tuple[list[str], list[int]]:
    """(options, labels) from either mc1_targets form: {text: label} or {choices, labels}."""
    if isinstance(raw, Mapping) and set(raw) == {"choices", "labels"}:
        options, labels = list(raw["choices"]), list(raw["labels"])
    elif isinstance(raw, Mapping):
        options, labels = list(raw.keys()), list(raw.values())
    else:
        raise DatasetError(f"{where}: mc1_targets must be an object, got {type(raw).__name__}.")
    if len(options) != len(labels) or len(options) < 2:
        raise DatasetError(
            f"{where}: mc1_targets needs >= 2 options with one label each, got "
            f"{len(options)} options and {len(labels)} labels."
        )
    if sorted(int(v) for v in labels) != [0] * (len(labels) - 1) + [1]:
        raise DatasetError(f"{where}: mc1_targets must mark exactly one option 1, got {labels}.")
    return [str(o) for o in options], [int(v) for v in labels]


def build_examples(
    questions: list[Any], targets: list[Any], shuffle_seed: int, where: str
) -> list[MCExample]:
    """Shuffled MC1 examples, ids `truthfulqa-mc1/validation/<index:04d>` (0-based file index)."""
    out = []
    for index, (question, raw) in enumerate(zip(questions, targets)):
        options, labels = _targets(raw, f"{where}, question {index}")
        order = list(range(len(options)))
        random.Random(f"{shuffle_seed}:{index}").shuffle(order)
        out.append(
            MCExample(
                example_id=f"truthfulqa-mc1/{SPLIT}/{index:04d}",
                subject=SUBJECT,
                category=SUBJECT,
                question=str(question),
                choices=tuple(options[j] for j in order),
                label=order.index(labels.index(1)),
            )
        )
    return out


def load_truthfulqa_file(path: Path, shuffle_seed: int) -> list[MCExample]:
    """All MC1 questions of a local `mc_task.json`, in file order."""
    try:
        with open(path, encoding="utf-8") as fh:
            rows = json.load(fh)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path} is not valid JSON ({err}); re-download mc_task.json.") from err
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        raise DatasetError(f"{path} must hold a JSON list of question objects.")
    for i, row in enumerate(rows):
        if "question" not in row or "mc1_targets" not in row:
            raise DatasetError(f"{path}, question {i}: needs keys 'question' and 'mc1_targets'.")
    return build_examples(
        [r["question"] for r in rows], [r["mc1_targets"] for r in rows], shuffle_seed, str(path)
    )


def load_truthfulqa_hub(repo: str, shuffle_seed: int) -> list[MCExample]:
    """All MC1 questions of the hub's `multiple_choice` config, `validation` split."""
    cols = load_hub_columns(repo, "multiple_choice", SPLIT)
    require_columns(cols, ("question", "mc1_targets"), repo)
    return build_examples(cols["question"], cols["mc1_targets"], shuffle_seed, f"hub:{repo}")
