"""Generic multiple-choice questions from a local table (.csv, .jsonl/.ndjson, .json, .parquet).

Columns (one row per question):
- `question` (required).
- options: a list column `choices` (JSONL/JSON/Parquet), or in CSV a JSON-encoded list string
  (`'["a", "b", "c"]'`), or separate columns `A`, `B`, `C`, ... (empty trailing cells are
  dropped, so rows may have different option counts).
- `answer` (required): a letter ("B") or a 0-based index (1 or "1").
- optional `subject` (default: the file stem), `category` (default "none"), `id` (default
  `file/<stem>/<row:04d>`, 0-based row; a given id is used verbatim and must be unique).

Row numbers in error messages are 1-based data rows (a CSV header is not counted).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from extract.data.examples import DatasetError, MCExample

SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json", ".parquet")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def read_table(path: Path) -> list[dict[str, Any]]:
    """Rows of the file as dicts (CSV cells are read as strings, never type-inferred)."""
    import polars as pl

    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # infer_schema_length=0: every cell a string, so "None" / "NA" / "0" stay as written
            df = pl.read_csv(path, infer_schema_length=0)
        elif suffix in (".jsonl", ".ndjson"):
            df = pl.read_ndjson(path)
        elif suffix == ".json":
            try:
                df = pl.read_json(path)
            except Exception:  # a .json file that is JSON lines
                df = pl.read_ndjson(path)
        elif suffix == ".parquet":
            df = pl.read_parquet(path)
        else:
            raise DatasetError(
                f"unsupported file type {path.suffix!r} for {path}; use one of {', '.join(SUFFIXES)}."
            )
    except DatasetError:
        raise
    except Exception as err:
        raise DatasetError(f"could not read {path}: {type(err).__name__}: {err}") from err
    return df.to_dicts()


def _text(value: Any, what: str, where: str) -> str:
    if value is None:
        raise DatasetError(f"{where}: {what} is empty (null); fill it in or drop the row.")
    if isinstance(value, (dict, list)):
        raise DatasetError(f"{where}: {what} must be text, got {type(value).__name__}.")
    return str(value)


def _choices(row: dict[str, Any], columns: list[str], where: str) -> list[str]:
    if "choices" in row:
        raw = row["choices"]
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError as err:
                raise DatasetError(
                    f"{where}: column 'choices' must be a list or a JSON-encoded list such as "
                    f'["a", "b"], got {row["choices"]!r} ({err}).'
                ) from err
        if not isinstance(raw, (list, tuple)):
            raise DatasetError(f"{where}: column 'choices' must be a list, got {raw!r}.")
        opts = [_text(v, f"choice {i}", where) for i, v in enumerate(raw)]
    else:
        letter_cols = [c for c in LETTERS if c in columns]
        if letter_cols != list(LETTERS[: len(letter_cols)]) or len(letter_cols) < 2:
            raise DatasetError(
                f"{where}: no options found; need a 'choices' column or option columns 'A', 'B', "
                f"... (consecutive from A); found columns {columns}."
            )
        opts = ["" if row[c] is None else str(row[c]) for c in letter_cols]
        while opts and opts[-1] == "":
            opts.pop()
    if len(opts) < 2:
        raise DatasetError(f"{where}: needs at least 2 options, found {len(opts)}.")
    return opts


def _answer(value: Any, n_choices: int, where: str) -> int:
    index: int | None = None
    if isinstance(value, bool) or value is None:
        index = None
    elif isinstance(value, int):
        index = value
    elif isinstance(value, float) and value.is_integer():
        index = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if len(text) == 1 and text.upper() in LETTERS:
            index = LETTERS.index(text.upper())
        elif text.isdigit():
            index = int(text)
    if index is None:
        raise DatasetError(
            f"{where}: answer {value!r} is neither a letter (A, B, ...) nor a 0-based index."
        )
    if not 0 <= index < n_choices:
        raise DatasetError(
            f"{where}: answer {value!r} is outside the {n_choices} choices "
            f"(valid: {LETTERS[0]}-{LETTERS[n_choices - 1]} or 0-{n_choices - 1})."
        )
    return index


def load_table(path: Path) -> list[MCExample]:
    """All rows of a local table as examples, in file order."""
    rows = read_table(path)
    if not rows:
        raise DatasetError(f"{path} holds no rows; add at least one question.")
    columns = list(rows[0].keys())
    missing = [c for c in ("question", "answer") if c not in columns]
    if missing:
        raise DatasetError(
            f"{path} lacks required column(s) {missing} (row 1); found {columns}. A question "
            "file needs 'question', 'answer' and 'choices' (or 'A', 'B', ...) columns."
        )
    out: list[MCExample] = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        where = f"{path}, row {i + 1}"
        choices = _choices(row, columns, where)
        if row.get("id") is None:
            example_id = f"file/{path.stem}/{i:04d}"
        else:
            example_id = str(row["id"])
        if example_id in seen:
            raise DatasetError(f"{where}: duplicate id {example_id!r}; ids must be unique.")
        seen.add(example_id)
        subject = row.get("subject")
        category = row.get("category")
        out.append(
            MCExample(
                example_id=example_id,
                subject=path.stem if subject in (None, "") else str(subject),
                category="none" if category in (None, "") else str(category),
                question=_text(row["question"], "question", where),
                choices=tuple(choices),
                label=_answer(row["answer"], len(choices), where),
            )
        )
    return out
