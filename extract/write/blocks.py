"""The block loop of an extraction: each block of examples is computed in sorted batches,
self-checked against the model's own logits, then handed to a writer thread, so compressing and
writing overlap the next block's forward passes. A block is claimed before it is computed, so
shards writing one store never compute the same block twice."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from tqdm import tqdm

from extract.config import ExtractConfig
from extract.forward.batching import plan_batches
from extract.forward.capture import run_batch
from extract.forward.prefix import MIN_PREFIX, SharedPrefix, prefix_groups
from extract.forward.tokens import pad_batch
from extract.model.arch import LastMlp, Resolved
from extract.write.storeio import store_io_error
from layercal import format as fmt
from layercal.lens import lens_logits, self_check_tolerance

tolerance = self_check_tolerance  # 1e-3 in float32; looser for 16-bit (docs/store-format.md)


class SelfCheckError(RuntimeError):
    """The lens on the stored last-layer residual does not reproduce the model's logits."""


def self_check(
    resid_last: np.ndarray,
    model_logits: np.ndarray,
    w_ans: np.ndarray,
    b_ans: np.ndarray | None,
    res: Resolved,
    dtype: str,
    where: str,
) -> float:
    """numpy lens on the stored last-layer residual vs the model's own answer logits."""
    z = lens_logits(resid_last, w_ans, res.norm, b_ans)
    diff = float(np.abs(z - model_logits).max())
    tol = tolerance(dtype, model_logits)
    if not diff <= tol:
        raise SelfCheckError(
            f"self-check failed for {where}: the logit lens on the stored last-layer residual "
            f"differs from the model's logits by {diff:.3g} (> {tol:.3g}, dtype {dtype}). The "
            f"architecture entry for {res.model_type!r} in extract/model/arch.py (final norm, soft-cap, "
            "bias) does not describe this model. Nothing of this block was written."
        )
    return diff


def _claim(out: Path, g: zarr.Group, b: int) -> fmt.BlockClaim | None:
    """Claim block ``b`` (refused when another live writer holds it); None when it turns out to
    be written already (another process finished it after this run listed its blocks)."""
    claim, note = fmt.claim_block(out, b)
    if note:
        print(note, file=sys.stderr)
    if fmt.written_mask(g)[fmt.layout_of(g).block_slice(b)].all():
        fmt.release_block(claim)
        return None
    return claim


def _write_block(
    out: Path, g: zarr.Group, b: int, arrays: dict[str, np.ndarray], claim: fmt.BlockClaim
) -> str:
    """Write and mark block ``b`` (writer thread), then release its claim, even on failure."""
    try:
        return fmt.write_block(g, b, arrays)
    except OSError as e:
        raise store_io_error(out, f"write block {b} of", e) from e
    finally:
        fmt.release_block(claim)


def compute_block(
    model: Any,
    res: Resolved,
    tok: Any,
    seqs: Sequence[Sequence[int]],
    ans_ids: list[int],
    cfg: ExtractConfig,
    bar: tqdm,
    keys: Sequence[str] | None = None,
    mlp: LastMlp | None = None,
) -> dict[str, np.ndarray]:
    """The activation arrays of one block. ``keys`` (one per prompt, e.g. its subject): prompts
    of one key that share a long token prefix run as suffixes against that prefix, computed once
    (:mod:`extract.forward.prefix`) and freed when the key is done; None: every prompt in full.
    ``mlp``: the capture mlp_last, recorded as the array ``mlp_last`` (None: not captured)."""
    n = len(seqs)
    out: dict[str, np.ndarray] = {}
    device = next(model.parameters()).device
    bs, budget = cfg.batch_size, cfg.max_batch_tokens
    assert isinstance(bs, int) and budget != "auto", "auto sizes are resolved before the block"
    groups = prefix_groups(seqs, keys) if keys is not None else [(0, list(range(n)))]
    for p, members in groups:
        shared = SharedPrefix(model, seqs[members[0]][:p]) if p else None
        side = "right" if shared is not None else cfg.padding_side
        tails = [seqs[i][p:] for i in members]
        try:
            # longest first (an out-of-memory shows early), cut by batch size and token budget
            for sub in plan_batches([len(t) for t in tails], bs, budget):
                ids, mask = pad_batch(tok, [tails[j] for j in sub], device, side)
                r = run_batch(model, res, ids, mask, ans_ids, prefix=shared, mlp=mlp)
                idx = [members[j] for j in sub]
                for name in (*fmt.ACTIVATION_ARRAYS, *fmt.CAPTURE_ARRAYS):
                    t = getattr(r, name)  # write_block keeps those the store has
                    if t is None:
                        continue  # a capture not asked for
                    if name not in out:
                        out[name] = np.empty((n, *t.shape[1:]), dtype=np.float32)
                    out[name][idx] = t.numpy()
                bar.update(len(idx))
        finally:
            if shared is not None:
                shared.close()
    return out


def check_reuse(
    model: Any,
    res: Resolved,
    tok: Any,
    seqs: Sequence[Sequence[int]],
    keys: Sequence[str],
    ans_ids: list[int],
    dtype: str,
) -> tuple[str, str]:
    """Whether to reuse shared prefixes in this run ("on"; "none": no prompts share MIN_PREFIX
    tokens; "fallback") and a line saying why. "fallback" when one prompt run against its group's prefix does not
    reproduce the same prompt run in full (lens logits within the dtype's self-check tolerance;
    an error of the model's cache counts as a mismatch): then every prompt runs in full."""
    groups = [(p, m) for p, m in prefix_groups(seqs, keys) if p]
    if not groups:
        return "none", f"off: no prompts share a prefix of {MIN_PREFIX} tokens"
    p, members = min(groups, key=lambda g: g[0])  # the cheapest check
    seq = seqs[members[0]]
    device = next(model.parameters()).device
    try:
        ids, mask = pad_batch(tok, [seq], device, "left")
        full = run_batch(model, res, ids, mask, ans_ids)
        shared = SharedPrefix(model, seq[:p])
        ids, mask = pad_batch(tok, [seq[p:]], device, "right")
        part = run_batch(model, res, ids, mask, ans_ids, prefix=shared)
        shared.close()
    except Exception as e:  # any model or cache that cannot run suffixes against a prefix
        return (
            "fallback",
            f"off, every prompt in full: this model cannot reuse a prefix ({e!r:.200})",
        )
    diff = float((full.lens_logits - part.lens_logits).abs().max())
    tol = tolerance(dtype, full.model_logits.numpy())
    if not diff <= tol:
        return "fallback", (
            f"off, every prompt in full: a prompt run against its shared prefix differs from the "
            f"same prompt in full by {diff:.3g} (> {tol:.3g}) in the lens logits"
        )
    shared_tokens = sum(p * len(m) for p, m in groups)
    total = sum(len(seqs[i]) for _, m in groups for i in m)
    return "on", (
        f"on: {len(groups)} group(s) share prefixes, {shared_tokens / max(total, 1):.0%} of their "
        f"tokens computed once per group and block (checked: max |diff| {diff:.1e} vs full)"
    )


def write_blocks(
    out: Path,
    g: zarr.Group,
    todo: Sequence[int],
    *,
    model: Any,
    res: Resolved,
    tok: Any,
    seqs: Sequence[Sequence[int]],
    ans_ids: list[int],
    lens: tuple[np.ndarray, np.ndarray | None],
    dtype: str,
    cfg: ExtractConfig,
    bar: tqdm,
    keys: Sequence[str] | None = None,
    mlp: LastMlp | None = None,
) -> float:
    """Compute, self-check and write blocks ``todo`` of the store ``g`` at ``out``; at most one
    block waits for the writer thread. ``lens``: the answer rows of W_U (K, d) and of the bias.
    ``keys``, ``mlp``: see :func:`compute_block` (None: no prefix reuse, no capture).
    Returns the largest self-check difference. On any failure the claim of the block in hand is
    released; blocks already marked written stay (``--resume`` continues from them)."""
    layout = fmt.layout_of(g)
    w_ans, b_ans = lens
    max_diff = 0.0
    pending: list[Future[str]] = []
    claim: fmt.BlockClaim | None = None
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="zarr-writer") as writer:
            for b in todo:
                sl = layout.block_slice(b)
                claim = _claim(out, g, b)
                if claim is None:  # another writer finished it meanwhile
                    bar.update(sl.stop - sl.start)
                    continue
                block_keys = None if keys is None else keys[sl]
                arrays = compute_block(
                    model, res, tok, seqs[sl], ans_ids, cfg, bar, block_keys, mlp
                )
                where = f"block {b} (examples {sl.start}-{sl.stop - 1})"
                last, logits = arrays["resid"][:, -1], arrays["model_logits"]
                diff = self_check(last, logits, w_ans, b_ans, res, dtype, where)
                max_diff = max(max_diff, diff)
                for f in pending:
                    f.result()  # surface write errors; keep at most one block in flight
                pending = [writer.submit(_write_block, out, g, b, arrays, claim)]
                claim = None  # the writer releases it
            for f in pending:
                f.result()
    except BaseException:
        if claim is not None:
            fmt.release_block(claim)
        raise
    return max_diff
