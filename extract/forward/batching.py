"""How the prompts of one write block are cut into forward batches.

Prompts are taken longest first (ties by position, so the plan is deterministic and a resumed or
sharded run computes exactly the same batches). A batch holds at most ``batch_size`` prompts and,
when ``max_tokens`` is set, at most ``max_tokens`` padded tokens (prompts x its longest prompt); a
prompt longer than ``max_tokens`` is a batch of its own.

Why a token budget: MMLU prompts range from ~40 to ~650 tokens. With a fixed batch size, the
batches of the long tail are mostly padding, and attention costs grow with the square of the
padded length. On a CPU, where a batch of one long prompt already keeps the cores busy, capping
the padded tokens per forward pass cuts the work. SmolLM2-135M, one thread, CPU seconds of the
decoder: 64 MMLU prompts 29.5 s in sorted batches of 16, 17.9 s with a budget of 2,048 tokens;
128 prompts 40.2 s and 31.7 s with 1,024 (see docs/benchmarks.md). On a GPU large batches are
what keeps the device busy, so the default there is no budget.
"""

from __future__ import annotations

from collections.abc import Sequence

CPU_MAX_BATCH_TOKENS = 1024  # default --max-batch-tokens on CPU


def plan_batches(
    lengths: Sequence[int], batch_size: int, max_tokens: int | None = None
) -> list[list[int]]:
    """Positions (into ``lengths``) of each forward batch, longest prompts first."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        longest = lengths[cur[0]] if cur else lengths[i]
        full = len(cur) >= batch_size
        over = max_tokens is not None and (len(cur) + 1) * longest > max_tokens
        if cur and (full or over):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def default_max_tokens(device_type: str) -> int | None:
    """The budget ``--max-batch-tokens auto`` means on a device: a cap on CPU, none elsewhere."""
    return CPU_MAX_BATCH_TOKENS if device_type == "cpu" else None
