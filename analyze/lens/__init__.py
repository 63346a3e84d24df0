"""The logit lens on stored data: opening stores, the answer-option lens, the full-vocabulary
pass over ``resid``, and where dask runs.

- :mod:`~analyze.lens.store`: :func:`open_store` (read-only, lazy; local, ``.zip`` or fsspec).
- :mod:`~analyze.lens.answer`: :class:`AnswerLens`, the lens on the answer tokens every analysis
  uses, with the one dtype-aware tolerance against the values recorded at extraction.
- :mod:`~analyze.lens.vocab`: the full-vocabulary lens in one lazy pass (:func:`lens_pass`).
- :mod:`~analyze.lens.scheduler`: ``--scheduler auto|threads|processes|ADDRESS``.
- :mod:`~analyze.lens.fitted`: lenses fitted from a store (``layercal lens fit``), a translator
  per depth before the stored final norm and unembedding (not imported here: it loads on use).
"""

from __future__ import annotations

from analyze.lens.answer import AnswerLens, LensMismatchError, answer_logits
from analyze.lens.scheduler import dask_scheduler, scheduler_of
from analyze.lens.store import (
    DEFAULT_CHUNKS,
    IncompleteStoreError,
    examples_frame,
    norm_spec_of,
    open_store,
    store_hash,
)
from analyze.lens.vocab import (
    VOCAB_CHUNK,
    full_vocab_arrays,
    lens_pass,
    option_mass,
    option_mass_one_source,
    recorded_checks,
    vocab_lse_entropy,
)

__all__ = [
    "DEFAULT_CHUNKS",
    "VOCAB_CHUNK",
    "AnswerLens",
    "IncompleteStoreError",
    "LensMismatchError",
    "answer_logits",
    "dask_scheduler",
    "examples_frame",
    "full_vocab_arrays",
    "lens_pass",
    "norm_spec_of",
    "open_store",
    "option_mass",
    "option_mass_one_source",
    "recorded_checks",
    "scheduler_of",
    "store_hash",
    "vocab_lse_entropy",
]
