"""Stores for the explorer's tests: real MMLU questions (from ``$LAYERCAL_DATA_DIR``) with
planted lens logits that behave like a model's: at chance early, accuracy rising in the middle,
overconfident after that and corrected in the last depths."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from tests.analyze.planted import make_store

SUBJECTS = {
    "astronomy": "stem",
    "high_school_biology": "stem",
    "philosophy": "humanities",
    "world_religions": "humanities",
    "high_school_macroeconomics": "social_sciences",
    "nutrition": "other",
}


def mmlu_questions(data_dir: Path, per_subject: int) -> list[dict[str, object]]:
    """The first ``per_subject`` test questions of each of SUBJECTS, in order."""
    out = []
    for subject, category in SUBJECTS.items():
        with open(data_dir / "mmlu" / "test" / f"{subject}_test.csv", newline="") as f:
            for j, row in enumerate(csv.reader(f)):
                if j == per_subject:
                    break
                out.append(
                    {
                        "id": f"mmlu/test/{subject}/{j:04d}",
                        "subject": subject,
                        "category": category,
                        "question": row[0],
                        "choices": row[1:5],
                        "label": "ABCD".index(row[5].strip()),
                    }
                )
    return out


def planted_logits(label: np.ndarray, n_layers: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """(n, L, 4) logits: near chance early; from a depth of its own (40-75% of the depth) the
    lens favours the right answer of about 65% of the questions (``shift`` more: a second store
    to overlay), a distractor for the others; overconfident around 80% of the depth, much less
    confident at the last depth. Each question's noise drifts smoothly over depth."""
    rng = np.random.default_rng(seed)
    n = label.size
    frac = np.arange(n_layers) / (n_layers - 1)
    knows = rng.random(n) < 0.65 + shift
    onset = rng.uniform(0.4, 0.75, n)
    rise = 1 / (1 + np.exp(-(frac[None, :] - onset[:, None]) / 0.06))  # (n, L)
    distractor = (label + rng.integers(1, 4, n)) % 4
    target = np.where(knows, label, distractor)
    drift = (
        np.cumsum(rng.normal(0, 0.45, (n, n_layers, 4)), axis=1)
        / np.sqrt(np.arange(1, n_layers + 1))[None, :, None]
    )
    z = drift + 0.6 * rng.normal(0, 1, (n, 1, 4))
    z[np.arange(n), :, target] += 2.2 * rise
    scale = 0.5 + 1.0 * frac + 1.8 * np.exp(-(((frac - 0.8) / 0.1) ** 2))
    scale[-1] *= 0.6  # the correction at the last depth
    return z * scale[None, :, None]


def explorer_store(
    path: Path,
    data_dir: Path,
    *,
    per_subject: int = 40,
    n_layers: int = 13,
    seed: int = 0,
    shift: float = 0.0,
    three_options: int = 0,
) -> Path:
    """A store of ``6 * per_subject`` real MMLU questions with planted lens logits.
    ``three_options``: every so many questions lose option D where it is not the answer (as
    TruthfulQA's varying option counts)."""
    qs = mmlu_questions(data_dir, per_subject)
    if three_options:
        for q in qs[::three_options]:
            if q["label"] != 3:
                q["choices"] = list(q["choices"])[:3]  # type: ignore[call-overload]
    label = np.array([q["label"] for q in qs])
    return make_store(
        path,
        planted_logits(label, n_layers, seed, shift),
        label,
        subjects=[str(q["subject"]) for q in qs],
        categories=[str(q["category"]) for q in qs],
        questions=[str(q["question"]) for q in qs],
        choices=[list(q["choices"]) for q in qs],  # type: ignore[call-overload]
        example_ids=[str(q["id"]) for q in qs],
        vocab=48,  # a small vocabulary: the options hold a visible share of it
        seed=seed,
    )
