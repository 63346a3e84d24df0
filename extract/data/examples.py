"""Multiple-choice data records shared by every dataset loader.

`MCExample` is one question with its options in presentation order; `MCDataset` is a selection of
them plus few-shot exemplars and provenance. Loaders live in `mmlu.py`, `truthfulqa.py` and
`tabular.py`; the public entry point is `extract.data.load.load_dataset`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class DatasetError(ValueError):
    """Bad dataset input: the message says what is wrong and what to do about it."""


@dataclass(frozen=True)
class MCExample:
    """One multiple-choice question.

    `choices` holds the K option texts in presentation order (after any shuffle), and
    `label` is the index (0 <= label < K) of the correct one in `choices`.
    """

    example_id: str
    subject: str
    category: str
    question: str
    choices: tuple[str, ...]
    label: int

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (choices as a list), used for hashing and provenance."""
        return {
            "example_id": self.example_id,
            "subject": self.subject,
            "category": self.category,
            "question": self.question,
            "choices": list(self.choices),
            "label": self.label,
        }


@dataclass(frozen=True)
class MCDataset:
    """A loaded benchmark selection.

    `examples` has N items in dataset order; `shots` maps subject -> k exemplars (empty when
    k = 0); `info` records how the selection was made (name, split, subjects, category, limit,
    seed, shots, shuffle_seed, category_map, source, n_examples, n_available).
    """

    name: str
    split: str
    subjects: tuple[str, ...]
    source: str
    examples: tuple[MCExample, ...]
    shots: Mapping[str, tuple[MCExample, ...]] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.examples)

    def content_hash(self) -> str:
        """sha256 hex digest of the examples and shots as canonical JSON.

        Independent of where the data came from (data dir or hub): the same questions, options,
        labels and ids give the same hash.
        """
        payload = {
            "examples": [ex.to_json() for ex in self.examples],
            "shots": {
                subject: [ex.to_json() for ex in exs] for subject, exs in sorted(self.shots.items())
            },
        }
        text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @property
    def max_choices(self) -> int:
        """Largest option count K over the examples (0 for an empty dataset)."""
        return max((len(ex.choices) for ex in self.examples), default=0)


def sample_indices(n_total: int, limit: int | None, seed: int) -> list[int]:
    """Indices of a seeded random sample of `limit` out of `n_total`, in ascending order.

    `limit=None` or `limit >= n_total` selects everything. The sample is drawn with
    `numpy.random.default_rng(seed)`, so the same (n_total, limit, seed) gives the same rows.
    """
    if limit is None or limit >= n_total:
        return list(range(n_total))
    rng = np.random.default_rng(seed)
    picked = rng.choice(n_total, size=limit, replace=False)
    return sorted(int(i) for i in picked)


def check_limit(limit: int | None) -> None:
    """Reject a limit that is not None or a positive int."""
    if limit is None:
        return
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise DatasetError(
            f"limit must be a positive int or None, got {limit!r}; "
            "pass e.g. limit=200 for a random sample of 200 examples, or omit it for all."
        )


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """' Did you mean: a, b?' for close matches of `word` among `options`, else ''."""
    matches = difflib.get_close_matches(word, list(options), n=5, cutoff=0.5)
    return f" Did you mean: {', '.join(matches)}?" if matches else ""


def normalise_key(word: str) -> str:
    """Lower-case and map spaces and hyphens to underscores ("High School" -> "high_school")."""
    return word.strip().lower().replace(" ", "_").replace("-", "_")


def as_name_list(values: Sequence[str] | str, what: str) -> list[str]:
    """Validate a user-given list of names (a bare string is rejected: it is a common slip)."""
    if isinstance(values, str):
        raise DatasetError(
            f"{what} must be a list of names, got the string {values!r}; pass [{values!r}]."
        )
    out = list(values)
    if not out:
        raise DatasetError(f"{what} is empty; pass at least one name or None for all.")
    for v in out:
        if not isinstance(v, str):
            raise DatasetError(f"{what} must hold strings, got {v!r}.")
    return out
