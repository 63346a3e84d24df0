"""The extraction job: dataset + model -> a complete, self-checked activation store.

Work is done block by block (see layercal.format): the examples of a block are sorted by token
length and cut into batches (less padding), captured, self-checked, then handed to a writer thread
so compression and writing overlap the next block's forward passes (:mod:`extract.write.blocks`).
Blocks are assigned to shards by ``block % n == i`` and skipped when already marked written, which
is all that resume and multi-process extraction need (:mod:`extract.write.join`). Batches never span
blocks, so a block's bytes do not depend on which process or which run computed it.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import socket
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from extract.config import ExtractConfig, ExtractSummary, parse_shard, run_settings
from extract.data import MCDataset, load_dataset
from extract.data.prompts import PromptTemplate
from extract.forward.autobatch import auto_batch_size
from extract.forward.batching import default_max_tokens
from extract.forward.tokens import answer_token_ids, tokenize
from extract.model.arch import last_mlp, resolve, unembedding_answer_rows, unembedding_rows
from extract.model.load import load_model
from extract.write.blocks import SelfCheckError, check_reuse, self_check, write_blocks
from extract.write.join import check_target, create_or_join
from extract.write.provenance import example_meta, identity, provenance
from extract.write.storeio import already_complete, record_run, store_bytes, store_io_error
from layercal import format as fmt

__all__ = [
    "ExtractConfig",
    "ExtractSummary",
    "SelfCheckError",
    "extract",
    "parse_shard",
    "prepare",
    "self_check",
    "store_io_error",
]


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


def _load(cfg: ExtractConfig) -> Any:
    return load_model(
        cfg.model,
        revision=cfg.revision,
        dtype=cfg.dtype,
        device=cfg.device,
        device_map=cfg.device_map,
        trust_remote_code=cfg.trust_remote_code,
        attn_implementation=cfg.attn_implementation,
    )


def extract(cfg: ExtractConfig, loaded: Any = None) -> ExtractSummary:
    """Run (or resume) an extraction. ``loaded``: an already loaded :class:`LoadedModel`."""
    t0 = time.time()
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    out = Path(cfg.out)
    sharded = cfg.shard[1] > 1
    check_target(out, cfg)
    ds, template, prompts = prepare(cfg)
    loaded = loaded if loaded is not None else _load(cfg)
    tok, model = loaded.tokenizer, loaded.model
    choice = getattr(loaded, "dtype_choice", None)
    _say_dtype(choice, cfg.progress)
    res = resolve(model)
    K = ds.max_choices
    seqs = tokenize(tok, prompts)
    ans_ids = _answer_ids(tok, prompts, seqs, K, template)
    requested = cfg.batch_size
    cfg = _batching(cfg, model, res, tok, seqs, ans_ids)
    mlp = last_mlp(model, res) if "mlp_last" in cfg.capture else None  # refused before writing
    w_u, bias = unembedding_rows(res)  # float32 a slab at a time: hashed, then written
    ident = identity(loaded, template, ds, ans_ids, w_u)
    if cfg.capture:  # a store with a capture is another store: resume and merge check it
        ident["capture"] = list(cfg.capture)
    layout = fmt.Layout(len(ds.examples), res.n_depth, w_u.shape[1], w_u.shape[0], K, cfg.block)
    g, created = create_or_join(
        out,
        layout,
        sharded=sharded,
        identity=ident,
        new_store=lambda: {
            "meta": example_meta(ds, seqs),
            "provenance": provenance(loaded, ds, template, prompts, res, K),
        },
        w_u=w_u,
        bias=bias,
        norm=res.norm,
        answer_ids=ans_ids,
        mlp_last=None if mlp is None else fmt.MlpLastCapture(mlp.w_out, mlp.info),
    )
    if not created and (done := already_complete(out, g, layout, t0)) is not None:
        return done
    dtype = str(loaded.provenance.get("dtype"))
    run_record = _run_record(cfg, started, requested, choice)
    keys = _prefix_keys(cfg, model, res, tok, seqs, ds, ans_ids, dtype, run_record)
    try:
        record_run(g, run_record)
    except OSError as e:
        raise store_io_error(out, "record this run in", e) from e
    todo = fmt.blocks_todo(g, cfg.shard)
    n_todo = sum(len(range(*layout.block_slice(b).indices(layout.n_examples))) for b in todo)
    lens = unembedding_answer_rows(res, ans_ids)
    bar = tqdm(total=n_todo, unit="ex", desc=f"extract {out.name}", disable=not cfg.progress)
    try:
        max_diff = write_blocks(
            out,
            g,
            todo,
            model=model,
            res=res,
            tok=tok,
            seqs=seqs,
            ans_ids=ans_ids,
            lens=lens,
            dtype=dtype,
            cfg=cfg,
            bar=bar,
            keys=keys,
            mlp=mlp,
        )
    finally:
        bar.close()  # blocks already marked written stay; --resume continues from them
    return _finish(out, g, cfg, t0, len(todo), max_diff, n_todo, bar, requested)


def _run_record(
    cfg: ExtractConfig, started: str, requested: int | str, choice: Any
) -> dict[str, Any]:
    """This run's entry in the store's run record: when, where, with which settings."""
    record = {"started": started, "host": socket.gethostname(), **run_settings(cfg)}
    record["batch_size_requested"] = requested
    if choice is not None:
        record["dtype_choice"] = choice.record()
    return record


def _say_dtype(choice: Any, progress: bool) -> None:
    """``--dtype auto``'s choice and why (with progress), a forced dtype's warning (always)."""
    if choice is None:
        return
    if choice.warning:
        print(choice.warning, file=sys.stderr)
    if progress:
        print(f"dtype: {choice.dtype} ({choice.reason})", file=sys.stderr)


def _answer_ids(
    tok: Any, prompts: list[str], seqs: list[list[int]], k: int, template: PromptTemplate
) -> list[int]:
    """The token ids of the K answer letters, checked on the shortest, longest, first and last
    prompts: the continuations of the template in use (its target_delimiter decides " A" vs
    "A")."""
    sample = sorted(range(len(prompts)), key=lambda i: len(seqs[i]))
    probe = [prompts[i] for i in {sample[0], sample[-1], 0, len(prompts) - 1}]
    return answer_token_ids(tok, probe, k, target_delimiter=template.target_delimiter)


def _batching(
    cfg: ExtractConfig, model: Any, res: Any, tok: Any, seqs: list[list[int]], ans_ids: Any
) -> ExtractConfig:
    """``cfg`` with ``--batch-size auto`` and ``--max-batch-tokens auto`` resolved."""
    if cfg.batch_size == "auto":
        size = auto_batch_size(model, res, tok, seqs, ans_ids, cfg.block, cfg.padding_side)
        cfg = dataclasses.replace(cfg, batch_size=size)
    if cfg.max_batch_tokens == "auto":
        device_type = next(model.parameters()).device.type
        cfg = dataclasses.replace(cfg, max_batch_tokens=default_max_tokens(device_type))
    return cfg


def _prefix_keys(
    cfg: ExtractConfig,
    model: Any,
    res: Any,
    tok: Any,
    seqs: list[list[int]],
    ds: MCDataset,
    ans_ids: Any,
    dtype: str,
    run_record: dict[str, Any],
) -> list[str] | None:
    """The group key of each prompt when a shared prefix is run once per group (the subjects,
    whose few-shot exemplars are shared), else None; the run record says which and why."""
    if not cfg.prefix_reuse:
        return None
    subjects = [ex.subject for ex in ds.examples]
    status, note = check_reuse(model, res, tok, seqs, subjects, ans_ids, dtype)
    run_record["prefix_reuse"], run_record["prefix_reuse_note"] = status == "on", note
    if status == "fallback" or (status == "on" and cfg.progress):
        print(f"prefix reuse {note}", file=sys.stderr)
    return subjects if status == "on" else None


def _finish(
    out: Path,
    g: Any,
    cfg: ExtractConfig,
    t0: float,
    blocks_done: int,
    max_diff: float,
    n_todo: int,
    bar: tqdm,
    requested: Any,
) -> ExtractSummary:
    """Finalize the store when every block is written; the run's summary."""
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
        n_examples=fmt.layout_of(g).n_examples,
        n_written=int(mask.sum()),
        blocks_done=blocks_done,
        seconds=seconds,
        store_bytes=store_bytes(out),
        self_check_max_abs_diff=max_diff,
        complete=complete,
        shard_complete=not fmt.blocks_todo(g, cfg.shard),
        extra=extra,
    )
