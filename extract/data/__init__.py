"""Benchmarks as multiple-choice examples, and the prompts they are rendered into (never imports
torch or transformers).

- :mod:`~extract.data.examples`: :class:`MCExample` (one question, its options in presentation
  order) and :class:`MCDataset` (a selection with few-shot exemplars and provenance).
- :mod:`~extract.data.load`: :func:`load_dataset`, the one entry point, over the loaders
  :mod:`~extract.data.mmlu`, :mod:`~extract.data.truthfulqa` and :mod:`~extract.data.tabular`
  (a local question file); :mod:`~extract.data.hub` reads a hub copy, :mod:`~extract.data.sampling`
  is ``--per-subject``.
- :mod:`~extract.data.prompts`: :class:`PromptTemplate` (the lm-eval MMLU prompt, few-shot
  rendering, template files).
"""

from __future__ import annotations

from extract.data.examples import DatasetError, MCDataset, MCExample
from extract.data.load import (
    CATEGORY_NAMES,
    DATA_DIR_ENV,
    DATASET_NAMES,
    MMLU_CATEGORIES,
    MMLU_SUBJECTS,
    load_dataset,
)
from extract.data.prompts import DEFAULT_TEMPLATE, LM_EVAL_MMLU, PromptTemplate, TemplateError

__all__ = [
    "CATEGORY_NAMES",
    "DATASET_NAMES",
    "DATA_DIR_ENV",
    "DEFAULT_TEMPLATE",
    "LM_EVAL_MMLU",
    "MMLU_CATEGORIES",
    "MMLU_SUBJECTS",
    "DatasetError",
    "MCDataset",
    "MCExample",
    "PromptTemplate",
    "TemplateError",
    "load_dataset",
]
