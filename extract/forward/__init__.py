"""Prompts through the model: token ids, batches, and the last-token capture.

- :mod:`~extract.forward.tokens`: :func:`tokenize`, the answer tokens, :func:`pad_batch`.
- :mod:`~extract.forward.batching`: batches by size and token budget (``--max-batch-tokens``).
- :mod:`~extract.forward.autobatch`: ``--batch-size auto``.
- :mod:`~extract.forward.prefix`: one forward pass over a prompt prefix a group shares.
- :mod:`~extract.forward.capture`: the hooks and :func:`run_batch` (final-token residuals at
  every depth, the model's logits, lens extras).
"""

from __future__ import annotations

from extract.forward.autobatch import auto_batch_size
from extract.forward.batching import default_max_tokens, plan_batches
from extract.forward.capture import BatchResult, run_batch
from extract.forward.prefix import SharedPrefix, prefix_groups
from extract.forward.tokens import TokenizationError, answer_token_ids, pad_batch, tokenize

__all__ = [
    "BatchResult",
    "SharedPrefix",
    "TokenizationError",
    "answer_token_ids",
    "auto_batch_size",
    "default_max_tokens",
    "pad_batch",
    "plan_batches",
    "prefix_groups",
    "run_batch",
    "tokenize",
]
