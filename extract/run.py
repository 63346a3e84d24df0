"""The extraction job: dataset + model -> a complete, self-checked activation store.

Work is done block by block (see layercal.format): the examples of a block are sorted by token
length and cut into batches (less padding), captured, self-checked, then handed to a writer thread
so compression and writing overlap the next block's forward passes. Blocks are assigned to
shards by ``block % n == i`` and skipped when already marked written, which is all that resume and
multi-process extraction need. Batches never span blocks, so a block's bytes do not depend on
which process or which run computed it.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import errno
import platform
import socket
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import zarr
from tqdm import tqdm

from extract.arch import Resolved, resolve, unembedding_arrays
from extract.batching import default_max_tokens, plan_batches
from extract.capture import run_batch
from extract.datasets import MCDataset, load_dataset
from extract.models import Device, DType, load_model
from extract.prompts import PromptTemplate
from extract.tokens import answer_token_ids, pad_batch, tokenize
from layercal import __version__, git_commit
from layercal import format as fmt
from layercal.lens import lens_logits, self_check_tolerance

AUTO_MAX_BATCH = 256  # --batch-size auto tries powers of two up to this
AUTO_MEMORY_FRACTION = 0.5  # CPU/MPS: share of the available memory a batch may use
AUTO_DEVICE_FRACTION = 0.9  # CUDA: the probe's peak must stay under this share of the device


class SelfCheckError(RuntimeError):
    """The lens on the stored last-layer residual does not reproduce the model's logits."""


@dataclass
class ExtractConfig:
    model: str
    dataset: str
    out: str
    split: str = "test"
    subjects: Sequence[str] | None = None
    category: str | None = None
    data_dir: str | None = None
    limit: int | None = None
    per_subject: str | None = None  # e.g. "40,humanities=120" (extract/_sampling.py)
    seed: int = 0
    shots: int = 0
    template: str | None = None  # path to a template file; None = the lm-eval MMLU template
    batch_size: int | Literal["auto"] = 16  # "auto": the largest that fits (auto_batch_size)
    # padded tokens per forward pass (extract/batching.py); "auto": a cap on CPU, none on GPUs
    max_batch_tokens: int | Literal["auto"] | None = "auto"
    dtype: DType = "auto"
    device: Device = "auto"
    device_map: str | None = None
    revision: str | None = None
    trust_remote_code: bool = False
    attn_implementation: str | None = None
    resume: bool = False
    shard: tuple[int, int] = (0, 1)
    block: int = fmt.DEFAULT_BLOCK
    padding_side: str = "left"
    progress: bool = True
    hub_repo: str | None = None


@dataclass
class ExtractSummary:
    store: str
    n_examples: int
    n_written: int
    blocks_done: int
    seconds: float
    store_bytes: int
    self_check_max_abs_diff: float
    complete: bool
    shard_complete: bool = True
    already_complete: bool = False  # the store was complete before this run: nothing was done
    extra: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        if self.already_complete:
            return [
                f"store:      {self.store}",
                "store is already complete: nothing to do (nothing computed, store unchanged)",
                f"examples:   {self.n_written}/{self.n_examples} written",
                f"self-check: passed when it was written (max |diff| = "
                f"{self.self_check_max_abs_diff:.2e}, as recorded in the store)",
            ]
        rate = self.extra.get("examples_per_s", 0.0)
        return [
            f"store:      {self.store}",
            f"examples:   {self.n_written}/{self.n_examples} written "
            f"({self.blocks_done} blocks this run, {rate:.2f} examples/s)",
            f"time:       {self.seconds:.1f} s",
            *(
                [f"batch size: auto -> {self.extra['batch_size']} (largest that fits)"]
                if self.extra.get("batch_size_requested") == "auto"
                else []
            ),
            f"size:       {self.store_bytes / 2**20:.1f} MiB on disk",
            f"self-check: lens(last layer) vs model logits, max |diff| = "
            f"{self.self_check_max_abs_diff:.2e} -> passed",
            f"complete:   {'yes' if self.complete else 'no (other shards or blocks remain)'}",
        ]


tolerance = self_check_tolerance  # 1e-3 in float32; looser for 16-bit (docs/store-format.md)


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
            f"architecture entry for {res.model_type!r} in extract/arch.py (final norm, soft-cap, "
            "bias) does not describe this model. Nothing of this block was written."
        )
    return diff


def _library_versions() -> dict[str, str]:
    import numcodecs
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "zarr": zarr.__version__,
        "numcodecs": numcodecs.__version__,
        "numpy": np.__version__,
        "layercal": __version__,
    }


def prepare(cfg: ExtractConfig) -> tuple[MCDataset, PromptTemplate, list[str]]:
    """Load the dataset and render every prompt (no model needed)."""
    ds = load_dataset(
        cfg.dataset,
        split=cfg.split,
        subjects=cfg.subjects,
        category=cfg.category,
        data_dir=cfg.data_dir,
        limit=cfg.limit,
        per_subject=cfg.per_subject,
        seed=cfg.seed,
        shots=cfg.shots,
        hub_repo=cfg.hub_repo,
    )
    template = PromptTemplate.from_file(cfg.template) if cfg.template else PromptTemplate()
    prompts = [template.render(ex, ds.shots.get(ex.subject, ())) for ex in ds.examples]
    return ds, template, prompts


def extract(cfg: ExtractConfig, loaded: Any = None) -> ExtractSummary:
    """Run (or resume) an extraction. ``loaded``: an already loaded :class:`LoadedModel`."""
    t0 = time.time()
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    out = Path(cfg.out)
    sharded = cfg.shard[1] > 1
    if out.exists() and not (cfg.resume or sharded):
        raise fmt.StoreError(
            f"{out} already exists. Pass --resume to continue filling it, or choose another --out."
        )
    if cfg.resume and not out.exists() and not sharded:
        raise fmt.StoreError(f"--resume given but {out} does not exist. Drop --resume to start it.")
    ds, template, prompts = prepare(cfg)
    if loaded is None:
        loaded = load_model(
            cfg.model,
            revision=cfg.revision,
            dtype=cfg.dtype,
            device=cfg.device,
            device_map=cfg.device_map,
            trust_remote_code=cfg.trust_remote_code,
            attn_implementation=cfg.attn_implementation,
        )
    tok, model = loaded.tokenizer, loaded.model
    res = resolve(model)
    K = ds.max_choices
    seqs = tokenize(tok, prompts)
    sample = sorted(range(len(prompts)), key=lambda i: len(seqs[i]))
    probe = [prompts[i] for i in {sample[0], sample[-1], 0, len(prompts) - 1}]
    # the continuations of the template in use: its target_delimiter decides " A" vs "A"
    ans_ids = answer_token_ids(tok, probe, K, target_delimiter=template.target_delimiter)
    requested = cfg.batch_size
    if requested == "auto":
        cfg = dataclasses.replace(
            cfg,
            batch_size=auto_batch_size(model, res, tok, seqs, ans_ids, cfg.block, cfg.padding_side),
        )
    if cfg.max_batch_tokens == "auto":
        device_type = next(model.parameters()).device.type
        cfg = dataclasses.replace(cfg, max_batch_tokens=default_max_tokens(device_type))
    w_u, bias = unembedding_arrays(res)
    identity = {
        "model": loaded.provenance.get("model"),
        "model_source": loaded.provenance.get("source"),
        "gguf_sha256": loaded.provenance.get("gguf_sha256"),
        "revision": loaded.provenance.get("revision"),
        "dtype": loaded.provenance.get("dtype"),
        "template_sha256": template.sha256(),
        "dataset": ds.name,
        "split": ds.split,
        "dataset_sha256": ds.content_hash(),
        "answer_token_ids": ans_ids,
        "w_u_sha256": fmt.sha256_bytes(w_u),
    }
    layout = fmt.Layout(len(ds.examples), res.n_depth, w_u.shape[1], w_u.shape[0], K, cfg.block)
    run_record = {
        "started": started,
        "host": socket.gethostname(),
        "batch_size": cfg.batch_size,
        "batch_size_requested": requested,
        "max_batch_tokens": cfg.max_batch_tokens,
        "padding_side": cfg.padding_side,
        "shard": f"{cfg.shard[0]}/{cfg.shard[1]}",
    }
    g = None
    if not out.exists():
        meta = fmt.ExampleMeta(
            example_id=[e.example_id for e in ds.examples],
            subject=[e.subject for e in ds.examples],
            category=[e.category for e in ds.examples],
            question=[e.question for e in ds.examples],
            choices=[list(e.choices) for e in ds.examples],
            label=np.array([e.label for e in ds.examples]),
            n_tokens=np.array([len(s) for s in seqs]),
        )
        provenance = {
            "model": loaded.provenance,
            "dataset": dict(ds.info, content_sha256=ds.content_hash()),
            "template": {
                "name": template.name,
                "text": template.text(),
                "sha256": template.sha256(),
                "first_prompt": prompts[0],
            },
            "embed_scale": res.embed_scale,
            "libraries": _library_versions(),
            "layercal_git_commit": git_commit(),
            "answer_tokens": template.continuations(K),
            "self_check_tolerance": "1e-3 (float32); 0.05 + 2% of max |logit| (bf16/fp16)",
        }
        try:
            g = fmt.create_store(
                out,
                layout,
                meta,
                w_u=w_u,
                lm_head_bias=bias,
                norm=res.norm,
                answer_token_ids=np.array(ans_ids),
                attrs={"identity": identity, "provenance": provenance, "runs": []},
            )
        except FileExistsError:  # a sibling shard created it first: join it below
            g = None
        except OSError as e:  # nothing of it is usable: do not leave a half-created store
            fmt.remove_incomplete(out)
            raise store_io_error(out, "create", e, resumable=False) from e
    if g is None:
        g = fmt.open_for_write(out, wait_s=300.0 if sharded else 0.0, sole_writer=not sharded)
        diffs = fmt.identity_diff(fmt.attrs(g)["identity"], fmt.jsonable(identity))
        if diffs:
            raise fmt.StoreError(
                f"refusing to resume {out}: it was started by a different run.\n  "
                + "\n  ".join(diffs)
                + "\nUse the same model, template and dataset, or write to a new --out."
            )
        if fmt.layout_of(g) != layout:
            raise fmt.StoreError(f"refusing to resume {out}: layout {fmt.layout_of(g)} != {layout}")
        done = _already_complete(out, g, layout, t0)
        if done is not None:
            return done
    try:
        _record_run(g, run_record)
    except OSError as e:
        raise store_io_error(out, "record this run in", e) from e
    todo = fmt.blocks_todo(g, cfg.shard)
    n_todo = sum(len(range(*layout.block_slice(b).indices(layout.n_examples))) for b in todo)
    w_ans = w_u[ans_ids]
    b_ans = None if bias is None else bias[ans_ids]
    del w_u, bias  # the host copy of W_U (vocab x hidden fp32) is not needed past creation
    dtype = str(loaded.provenance.get("dtype"))
    max_diff = 0.0
    pending: list[Future[str]] = []
    claim: fmt.BlockClaim | None = None
    bar = tqdm(
        total=n_todo,
        unit="ex",
        desc=f"extract {out.name}",
        disable=not cfg.progress,
        dynamic_ncols=True,
    )
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="zarr-writer") as writer:
            for b in todo:
                sl = layout.block_slice(b)
                claim = _claim(out, g, b)
                if claim is None:  # another writer finished it meanwhile
                    bar.update(sl.stop - sl.start)
                    continue
                arrays = _compute_block(model, res, tok, seqs[sl], ans_ids, cfg, bar)
                where = f"block {b} (examples {sl.start}-{sl.stop - 1})"
                max_diff = max(
                    max_diff,
                    self_check(
                        arrays["resid"][:, -1],
                        arrays["model_logits"],
                        w_ans,
                        b_ans,
                        res,
                        dtype,
                        where,
                    ),
                )
                for f in pending:
                    f.result()  # surface write errors; keep at most one block in flight
                pending = [writer.submit(_write_block, out, g, b, arrays, claim)]
                claim = None  # the writer releases it
            for f in pending:
                f.result()
    except BaseException:
        bar.close()  # blocks already marked written stay; --resume continues from them
        if claim is not None:
            fmt.release_block(claim)
        raise
    bar.close()
    seconds = time.time() - t0
    mask = fmt.written_mask(g)
    complete = bool(mask.all())
    extra = {
        "examples_per_s": n_todo / max(bar.format_dict.get("elapsed", seconds) or seconds, 1e-9),
        "batch_size": cfg.batch_size,
        "batch_size_requested": requested,
    }
    if complete:
        try:
            fmt.finalize(
                out,
                {
                    "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "self_check_max_abs_diff_last_run": max_diff,
                },
            )
        except OSError as e:
            raise store_io_error(out, "finalize", e) from e
    return ExtractSummary(
        store=str(out),
        n_examples=layout.n_examples,
        n_written=int(mask.sum()),
        blocks_done=len(todo),
        seconds=seconds,
        store_bytes=_du(out),
        self_check_max_abs_diff=max_diff,
        complete=complete,
        shard_complete=not fmt.blocks_todo(g, cfg.shard),
        extra=extra,
    )


def _already_complete(
    out: Path, g: zarr.Group, layout: fmt.Layout, t0: float
) -> ExtractSummary | None:
    """The summary of a store that is finalized and fully written, else None. Such a store needs
    nothing: no run record, no second finalize, so its bytes and attributes stay as they are."""
    status = fmt.attrs(g).get("status", {})
    mask = fmt.written_mask(g)
    if not (status.get("complete") and mask.all()):
        return None  # (all written but not finalized: a kill before finalize; the run finishes it)
    return ExtractSummary(
        store=str(out),
        n_examples=layout.n_examples,
        n_written=int(mask.sum()),
        blocks_done=0,
        seconds=time.time() - t0,
        store_bytes=_du(out),
        self_check_max_abs_diff=float(status.get("self_check_max_abs_diff_last_run") or 0.0),
        complete=True,
        already_complete=True,
    )


def store_io_error(out: Path, what: str, e: OSError, resumable: bool = True) -> fmt.StoreError:
    """A failed write to the store as an error that says what happened and what to do."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        cause = "the disk or your quota is full, or a file size limit is set (ulimit -f)"
        fix = f"free space where {out} lives (or raise the limit)"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        cause = "permission denied, or a read-only filesystem"
        fix = f"make {out} writable by this user"
    else:
        cause, fix = "an I/O error", f"check the filesystem holding {out}"
    then = (
        "then run the same command with --resume: blocks already marked written are kept and "
        "the rest is recomputed."
        if resumable
        else "then run the same command again."
    )
    return fmt.StoreError(f"cannot {what} {out}: {cause} ({e.strerror or e}). Fix: {fix}, {then}")


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


def _record_run(g: zarr.Group, record: dict[str, Any]) -> None:
    info = fmt.attrs(g)
    info["runs"] = list(info.get("runs", [])) + [record]
    g.attrs["layercal"] = fmt.jsonable(info)


def _compute_block(
    model: Any,
    res: Resolved,
    tok: Any,
    seqs: Sequence[Sequence[int]],
    ans_ids: list[int],
    cfg: ExtractConfig,
    bar: tqdm,
) -> dict[str, np.ndarray]:
    n = len(seqs)
    out: dict[str, np.ndarray] = {}
    device = next(model.parameters()).device
    bs, budget = cfg.batch_size, cfg.max_batch_tokens
    assert isinstance(bs, int) and budget != "auto", "auto sizes are resolved before the block"
    # longest first (an out-of-memory shows early), cut by batch size and token budget
    for idx in plan_batches([len(s) for s in seqs], bs, budget):
        ids, mask = pad_batch(tok, [seqs[i] for i in idx], device, cfg.padding_side)
        r = run_batch(model, res, ids, mask, ans_ids)
        for name in fmt.ACTIVATION_ARRAYS:  # write_block keeps those the store has
            t = getattr(r, name)
            if name not in out:
                out[name] = np.empty((n, *t.shape[1:]), dtype=np.float32)
            out[name][idx] = t.numpy()
        bar.update(len(idx))
    return out


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


def _largest_fitting(sizes: Sequence[int], fits: Any) -> int:
    """The first of ``sizes`` (largest first) for which ``fits(size)``; 1 if none does."""
    for bs in sizes:
        if fits(bs):
            return bs
    return 1


def _probe_fits(
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
        return _largest_fitting(
            sizes, lambda bs: _probe_fits(model, res, tok, longest[:bs], ans_ids, padding_side)
        )
    import psutil

    avail = psutil.virtual_memory().available if available_bytes is None else available_bytes
    itemsize = next(model.parameters()).element_size()
    per = forward_bytes_per_prompt(model.config, len(longest[0]), max(itemsize, 4))
    return _largest_fitting(sizes, lambda bs: bs * per <= AUTO_MEMORY_FRACTION * avail)


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {text!r}: need 0 <= i < n")
    return i, n
