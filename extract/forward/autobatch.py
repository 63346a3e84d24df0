"""``--batch-size auto``: the largest batch of the longest prompts that fits in memory."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from extract.forward.capture import run_batch
from extract.forward.tokens import pad_batch
from extract.model.arch import Resolved

AUTO_MAX_BATCH = 256  # --batch-size auto tries powers of two up to this
AUTO_MEMORY_FRACTION = 0.5  # CPU/MPS: share of the available memory a batch may use
AUTO_DEVICE_FRACTION = 0.9  # CUDA: the probe's peak must stay under this share of the device


def forward_bytes_per_prompt(config: Any, seq_len: int, itemsize: int) -> int:
    """Rough peak bytes one prompt of ``seq_len`` tokens adds to a forward pass with capture and
    lens extras: a decoder layer's activations (residual, q/k/v/o, MLP), the attention scores
    (materialised on CPU: heads x T x T, with softmax), the 4D mask, and the lens chunk over the
    vocabulary. Conservative: SmolLM2-135M in fp32, batch 16 at T = 653, peaks 0.9 GB above the
    loaded model; this gives 1.1 GB (CPU SDPA does not materialise every T x T score)."""
    if hasattr(config, "get_text_config"):  # multimodal wrappers (Gemma 3) nest the sizes
        config = config.get_text_config()
    d = int(config.hidden_size)
    heads = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or d // heads)
    kv = int(getattr(config, "num_key_value_heads", None) or heads) * head_dim
    inter = int(getattr(config, "intermediate_size", None) or 4 * d)
    per_token = 6 * d + 2 * kv + 3 * inter
    return itemsize * (
        # lens chunk: about 128 (prompt, depth) rows of logits (capture.run_batch), i.e. 8
        # depths per prompt at batch 16 and fewer per prompt in larger batches
        seq_len * per_token + (3 * heads + 1) * seq_len**2 + 3 * 8 * config.vocab_size
    )


def largest_fitting(sizes: Sequence[int], fits: Callable[[int], bool]) -> int:
    """The first of ``sizes`` (largest first) for which ``fits(size)``; 1 if none does."""
    for bs in sizes:
        if fits(bs):
            return bs
    return 1


def probe_fits(
    model: Any,
    res: Resolved,
    tok: Any,
    seqs: Sequence[Sequence[int]],
    ans_ids: list[int],
    padding_side: str,
) -> bool:
    """Run one batch with capture on a CUDA device; False if it runs out of memory or peaks
    above AUTO_DEVICE_FRACTION of the device (headroom for fragmentation)."""
    device = next(model.parameters()).device
    try:
        torch.cuda.reset_peak_memory_stats(device)
        ids, mask = pad_batch(tok, seqs, device, padding_side)
        run_batch(model, res, ids, mask, ans_ids)
        torch.cuda.synchronize(device)
        total = torch.cuda.get_device_properties(device).total_memory
        return torch.cuda.max_memory_allocated(device) <= AUTO_DEVICE_FRACTION * total
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        torch.cuda.empty_cache()


def auto_batch_size(
    model: Any,
    res: Resolved,
    tok: Any,
    seqs: Sequence[Sequence[int]],
    ans_ids: list[int],
    block: int,
    padding_side: str = "left",
    available_bytes: int | None = None,
) -> int:
    """The largest power of two (at most AUTO_MAX_BATCH, and no larger than needed for the
    examples of one block) whose batch of the *longest* prompts fits in memory.

    CUDA: tried from the largest down, catching ``torch.cuda.OutOfMemoryError``. CPU and MPS: the
    estimate :func:`forward_bytes_per_prompt` against AUTO_MEMORY_FRACTION of the available
    memory (psutil), since running out of host memory kills the process instead of raising.
    """
    if not seqs:
        return 1
    need = min(len(seqs), block)
    cap = min(AUTO_MAX_BATCH, 1 << (need - 1).bit_length())
    sizes = [1 << k for k in range(cap.bit_length())][::-1]
    longest = sorted(seqs, key=len, reverse=True)
    device = next(model.parameters()).device
    if device.type == "cuda":
        return largest_fitting(
            sizes, lambda bs: probe_fits(model, res, tok, longest[:bs], ans_ids, padding_side)
        )
    import psutil

    avail = psutil.virtual_memory().available if available_bytes is None else available_bytes
    itemsize = next(model.parameters()).element_size()
    per = forward_bytes_per_prompt(model.config, len(longest[0]), max(itemsize, 4))
    return largest_fitting(sizes, lambda bs: bs * per <= AUTO_MEMORY_FRACTION * avail)
