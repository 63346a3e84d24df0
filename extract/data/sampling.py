"""Per-subject sampling: at most N questions of every subject, seeded, in dataset order.

    --per-subject 40                  at most 40 of each subject
    --per-subject 40,humanities=120   120 of each humanities subject, 40 of every other one
    --per-subject humanities=120      120 of each humanities subject, the others whole
    --per-subject 40,formal_logic=all formal_logic whole, 40 of every other subject

A subject's own entry wins over its category's, which wins over the default (the bare number).
Each subject is sampled with its own generator, ``numpy.random.default_rng([seed, crc32(subject)])``,
so adding or removing subjects does not change the questions drawn for the others.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import numpy as np

from extract.data.examples import DatasetError, MCExample, did_you_mean, normalise_key

DEFAULT = "*"  # key of the bare number: every subject without an entry of its own
PerSubject = Mapping[str, int | None]  # subject / category / DEFAULT -> cap (None: all)


def _count(text: str, spec: str) -> int | None:
    if text.strip().lower() == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise DatasetError(
            f"per_subject {spec!r}: {text!r} is not a positive count or 'all'; write e.g. "
            "'40,humanities=120' (40 of each subject, 120 of each humanities subject)."
        )
    return n


def parse_per_subject(spec: str | PerSubject) -> dict[str, int | None]:
    """``"40,humanities=120"`` -> ``{"*": 40, "humanities": 120}`` (a mapping is checked)."""
    if isinstance(spec, Mapping):
        return {
            (k if k == DEFAULT else normalise_key(k)): None
            if v is None
            else _count(str(v), str(spec))
            for k, v in spec.items()
        }
    caps: dict[str, int | None] = {}
    for item in (s.strip() for s in str(spec).split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = normalise_key(key) if sep else DEFAULT
        if key in caps:
            raise DatasetError(f"per_subject {spec!r}: {key!r} is given twice.")
        caps[key] = _count(value if sep else item, str(spec))
    if not caps:
        raise DatasetError(f"per_subject {spec!r} is empty; write e.g. '40,humanities=120'.")
    return caps


def per_subject_indices(examples: Sequence[MCExample], caps: PerSubject, seed: int) -> list[int]:
    """Indices (ascending) of at most ``caps[...]`` examples of each subject."""
    names = {ex.subject for ex in examples} | {ex.category for ex in examples}
    for key in caps:
        if key != DEFAULT and key not in names:
            raise DatasetError(
                f"per_subject names {key!r}, which is no subject or category of the selected "
                f"data.{did_you_mean(key, names)}"
            )
    by_subject: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        by_subject.setdefault(ex.subject, []).append(i)
    keep: list[int] = []
    for subject, rows in by_subject.items():
        category = examples[rows[0]].category
        cap = next((caps[k] for k in (subject, category, DEFAULT) if k in caps), None)
        if cap is None or cap >= len(rows):
            keep.extend(rows)
            continue
        rng = np.random.default_rng([seed, zlib.crc32(subject.encode("utf-8"))])
        keep.extend(rows[int(j)] for j in rng.choice(len(rows), size=cap, replace=False))
    return sorted(keep)
