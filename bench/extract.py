"""Extraction benchmark (issue 6): `layercal extract` against the bare forward pass, the loop
most researchers write, and the peers (TransformerLens, nnsight).

    .venv/bin/python bench/extract.py --n 128                      # SmolLM2-135M on the CPU
    .venv/bin/python bench/extract.py --model random:llama-3-8b    # GPU: Llama-3-8B shapes
    .venv/bin/python bench/extract.py --shots 5 --n 32             # few-shot: prefix reuse

All variants see the same model, prompts (MMLU test, drawn across all subjects with a fixed seed)
and batch size. Each run of a variant is its own subprocess, so peak RSS is per variant; repeats
are interleaved (A B C A B C) to cancel machine drift, and medians are reported. Model loading is
never timed. Variants:

- ``bare``: the decoder only (``model.base_model``: no capture, no unembedding, no writing) on
  exactly the batches extract uses (longest first, cut by batch size and token budget,
  ``extract.forward.batching``), tokenised beforehand — the floor for this approach; ``bare-sorted``: the
  same on plain length-sorted batches of ``--batch-size`` (what the peers' ``-sorted`` variants
  get); ``bare-unsorted`` (opt-in): on batches in dataset order;
- ``layercal``: :func:`extract.run.extract` end to end into a fresh store (dataset, tokenise,
  forward, capture, lens extras, self-check, compress, write);
- ``--shots K`` (issue 13): ``layercal`` on K-shot prompts of ``--n`` questions of each of
  ``--subjects`` (default world_religions,formal_logic; a seeded sample per subject), against
  ``layercal-full`` (the same prompts with ``--no-prefix-reuse``) and ``layercal-zeroshot``
  (the same questions zero-shot, the memory reference); the JSON adds ``prefix_reuse_vs_full``
  (wall-clock ratio, full over reuse) and ``peak_rss_reuse_vs_zeroshot``;
- ``naive``: ``output_hidden_states=True`` on unsorted, right-padded batches, full logits, last
  token gathered afterwards, ``np.save``;
- ``transformerlens[-sorted]``: ``TransformerBridge.run_with_cache`` restricted to the residual
  hooks, ``nnsight[-sorted]``: ``trace`` + ``.save()`` of each block's last-token output; both
  under ``torch.no_grad``, given layercal's token ids or prompts, in dataset order or in plain
  length-sorted batches of ``--batch-size``, and ``np.save`` at the end.

The last line of output is one JSON object (``layercal_vs_bare``, ``layercal_vs_naive``,
``layercal_vs_best_peer``, ``peak_rss_vs_bare``, ``prompts_per_s``, per-variant figures).
"""

from __future__ import annotations

import sys
from pathlib import Path

# First of all: this file is named extract.py, and running it puts its folder first on sys.path,
# where `import extract` would find this script instead of the package. Drop the folder, put the
# repository first.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent), *(p for p in sys.path if Path(p or ".").resolve() != _HERE)]

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

VARIANTS = (
    "bare",
    "bare-sorted",
    "bare-unsorted",
    "layercal",
    "naive",
    "transformerlens",
    "transformerlens-sorted",
    "nnsight",
    "nnsight-sorted",
    "layercal-full",
    "layercal-zeroshot",
)
SHOT_VARIANTS = ("layercal", "layercal-full", "layercal-zeroshot")  # the --shots comparison
DEFAULT_VARIANTS = tuple(v for v in VARIANTS if v not in ("bare-unsorted", *SHOT_VARIANTS[1:]))
SHOT_SUBJECTS = ["world_religions", "formal_logic"]
PEERS = {v: v.split("-")[0] for v in VARIANTS if v.startswith(("transformerlens", "nnsight"))}
LABELS = {"transformerlens": "TransformerLens", "nnsight": "nnsight"}
RESULT_TAG = "BENCH_RESULT "

# Real configs (hub config.json of meta-llama/Llama-3.2-1B and Meta-Llama-3-8B); random weights.
RANDOM_SHAPES: dict[str, dict[str, Any]] = {
    "llama-3.2-1b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        vocab_size=128256,
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 32.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192,
        },
        tie_word_embeddings=True,
    ),
    "llama-3-8b": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=128256,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
        tie_word_embeddings=False,
    ),
}


# --------------------------------------------------------------------------------------------
# child side: one variant, one repeat, in its own process


def _peak_rss() -> int:
    """Peak resident set size (bytes) since the last :func:`_reset_peaks` (Linux VmHWM)."""
    try:
        text = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", text).group(1)) * 1024  # type: ignore[union-attr]
    except (OSError, AttributeError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peaks(device: Any) -> None:
    import torch

    with contextlib.suppress(OSError):  # writing 5 resets VmHWM: loading is not in the peak
        Path("/proc/self/clear_refs").write_text("5")
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def random_model(name: str, dtype: str, device: str) -> Any:
    """A LoadedModel with the real config of ``name`` and random weights (SmolLM2's tokenizer:
    its ids are all inside Llama 3's vocabulary; throughput does not depend on them)."""
    import torch
    import transformers as tf

    from extract.model.load import LoadedModel, pick_device, resolve_model_path

    if name not in RANDOM_SHAPES:
        raise SystemExit(f"unknown random shape {name!r}; use one of {', '.join(RANDOM_SHAPES)}")
    dev = pick_device(device)  # type: ignore[arg-type]
    torch_dtype = torch.float32 if dtype == "float32" else torch.bfloat16
    tok = tf.AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m")[0])
    tok.padding_side = "left"
    tok.pad_token = tok.pad_token or tok.eos_token
    torch.manual_seed(0)
    with torch.device(dev):
        model = tf.AutoModelForCausalLM.from_config(
            tf.LlamaConfig(**RANDOM_SHAPES[name]), dtype=torch_dtype
        )
    prov = {
        "model": f"random:{name}",
        "source": "random weights from the real config",
        "dtype": str(torch_dtype).removeprefix("torch."),
        "device": dev,
        "model_type": "llama",
    }
    return LoadedModel(model.eval(), tok, prov)


def _load(args: argparse.Namespace) -> Any:
    from extract.model.load import load_model

    if args.model.startswith("random:"):
        dtype = "bfloat16" if args.dtype == "auto" else args.dtype
        return random_model(args.model.removeprefix("random:"), dtype, args.device)
    return load_model(args.model, dtype=args.dtype, device=args.device)


def _config(args: argparse.Namespace, out: str, variant: str = "layercal") -> Any:
    """The extraction every variant runs. With ``--shots K``: K-shot prompts of ``--n``
    questions of each of ``--subjects`` (a seeded sample, as ``--per-subject``); the variant
    ``layercal-full`` runs them without prefix reuse, ``layercal-zeroshot`` the same questions
    zero-shot (the memory reference)."""
    from extract.run import ExtractConfig

    select: dict[str, Any] = {"limit": args.n}
    if args.shots:
        select = {"subjects": args.subjects or SHOT_SUBJECTS, "per_subject": str(args.n)}
        select["shots"] = 0 if variant == "layercal-zeroshot" else args.shots
    return ExtractConfig(
        model=args.model,
        dataset=args.dataset,
        out=out,
        split=args.split,
        data_dir=args.data_dir,
        seed=args.seed,
        batch_size=args.batch_size,
        max_batch_tokens=args.max_batch_tokens,
        dtype=args.dtype,
        device=args.device,
        progress=False,
        prefix_reuse=variant != "layercal-full",
        **select,
    )


def sorted_batches(
    lengths: Sequence[int], batch_size: int, block: int, max_tokens: int | None = None
) -> list[list[int]]:
    """Per write block, longest first (ties by index), cut by ``extract.forward.batching.plan_batches``:
    with the run's token budget these are exactly extract's batches; without (None), plain
    length-sorted batches of ``batch_size``, what a researcher who sorts would write."""
    from extract.forward.batching import plan_batches

    out = []
    for start in range(0, len(lengths), block):
        sub = lengths[start : start + block]
        out += [[start + i for i in b] for b in plan_batches(sub, batch_size, max_tokens)]
    return out


def unsorted_batches(n: int, batch_size: int) -> list[list[int]]:
    return [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]


def padded_tokens(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> int:
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


class _Inputs:
    """Prompts, token ids, answer ids and batches, identical in every child."""

    def __init__(
        self, args: argparse.Namespace, tok: Any, device: Any, variant: str = "layercal"
    ) -> None:
        from extract.forward.batching import default_max_tokens
        from extract.forward.tokens import answer_token_ids, tokenize
        from extract.run import prepare
        from layercal.format import DEFAULT_BLOCK

        ds, _, self.prompts = prepare(_config(args, "", variant))
        self.seqs = tokenize(tok, self.prompts)
        self.lengths = [len(s) for s in self.seqs]
        self.ans_ids = answer_token_ids(tok, self.prompts[:1], ds.max_choices)
        budget = args.max_batch_tokens
        budget = default_max_tokens(device.type) if budget == "auto" else budget
        self.max_batch_tokens = budget
        # extract's own batches (the token budget of this run) and plain sorted batches
        self.planned = sorted_batches(self.lengths, args.batch_size, DEFAULT_BLOCK, budget)
        self.sorted = sorted_batches(self.lengths, args.batch_size, DEFAULT_BLOCK)
        self.unsorted = unsorted_batches(len(self.seqs), args.batch_size)

    def counts(self) -> dict[str, int]:
        return {"n": len(self.seqs), "tokens": sum(self.lengths)}


def _loop_variant(
    args: argparse.Namespace,
    inp: _Inputs,
    device: Any,
    batches: list[list[int]],
    step: Callable[[list[int]], tuple[Any, Any]],
    work: Path,
) -> dict[str, Any]:
    """Warm up on the shortest prompts, then time ``step`` over ``batches`` plus ``np.save``."""
    import numpy as np
    import torch

    n = len(inp.seqs)
    short = sorted(range(n), key=lambda i: inp.lengths[i])[: min(4, n)]
    step(short)  # warm-up: first-call allocations and kernel selection
    resid: np.ndarray | None = None
    logits: np.ndarray | None = None
    _reset_peaks(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for idx in batches:
        r, z = step(idx)
        if r is None:
            continue
        r, z = r.float().cpu().numpy(), z.float().cpu().numpy()
        if resid is None:
            resid = np.empty((n, *r.shape[1:]), np.float32)
            logits = np.empty((n, *z.shape[1:]), np.float32)
        resid[idx], logits[idx] = r, z  # type: ignore[index]
    if resid is not None and logits is not None:
        np.save(work / "resid.npy", resid)
        np.save(work / "model_logits.npy", logits)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        **inp.counts(),
        "padded_tokens": padded_tokens(inp.lengths, batches),
        "resid": str(work / "resid.npy") if resid is not None else None,
    }


def run_bare(args: argparse.Namespace, work: Path, batching: str) -> dict[str, Any]:
    import torch

    from extract.forward.capture import position_ids
    from extract.forward.tokens import pad_batch

    lm = _load(args)
    inp = _Inputs(args, lm.tokenizer, lm.device)
    decoder = lm.model.base_model  # the decoder stack without the LM head

    @torch.inference_mode()
    def step(idx: list[int]) -> tuple[Any, Any]:
        ids, mask = pad_batch(lm.tokenizer, [inp.seqs[i] for i in idx], lm.device, "left")
        decoder(
            input_ids=ids, attention_mask=mask, position_ids=position_ids(mask), use_cache=False
        )
        return None, None

    batches = {"planned": inp.planned, "sorted": inp.sorted, "unsorted": inp.unsorted}[batching]
    return _loop_variant(args, inp, lm.device, batches, step, work)


def run_naive(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch

    lm = _load(args)
    inp = _Inputs(args, lm.tokenizer, lm.device)
    model, tok, dev = lm.model, lm.tokenizer, lm.device

    def step(idx: list[int]) -> tuple[Any, Any]:
        enc = tok(
            [inp.prompts[i] for i in idx], return_tensors="pt", padding=True, padding_side="right"
        ).to(dev)
        with torch.no_grad():
            out = model(**enc, output_hidden_states=True)
        hs = torch.stack(out.hidden_states, dim=1)  # (B, L, T, d): every token of every layer
        last = enc["attention_mask"].sum(1) - 1
        rows = torch.arange(len(idx), device=dev)
        return hs[rows, :, last], out.logits[rows, last][:, inp.ans_ids]

    return _loop_variant(args, inp, dev, inp.unsorted, step, work)


def _peer_source(args: argparse.Namespace) -> tuple[str, Any, Any]:
    """(path or config folder, model object or None, torch dtype) for a peer to load."""
    import torch

    from extract.model.load import pick_device, pick_dtype, resolve_model_path

    if args.model.startswith("random:"):
        lm = _load(args)
        folder = tempfile.mkdtemp(prefix="bench-config-")
        lm.model.config.save_pretrained(folder)
        lm.tokenizer.save_pretrained(folder)
        return folder, lm, lm.model.dtype
    dtype: torch.dtype = pick_dtype(args.dtype, pick_device(args.device))
    return resolve_model_path(args.model)[0], None, dtype


def run_transformerlens(args: argparse.Namespace, work: Path, sort: bool) -> dict[str, Any]:
    import torch
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer

    from extract.forward.tokens import pad_batch
    from extract.model.load import pick_device

    path, lm, dtype = _peer_source(args)
    dev = pick_device(args.device)
    kw: dict[str, Any] = {"device": dev, "dtype": dtype}
    if lm is not None:
        kw.update(hf_model=lm.model, tokenizer=lm.tokenizer)
    bridge = TransformerBridge.boot_transformers(path, **kw)
    tok = AutoTokenizer.from_pretrained(path)
    tok.pad_token = tok.pad_token or tok.eos_token
    inp = _Inputs(args, tok, torch.device(dev))
    names = ["blocks.0.hook_resid_pre"] + [
        f"blocks.{i}.hook_resid_post" for i in range(bridge.cfg.n_layers)
    ]

    def step(idx: list[int]) -> tuple[Any, Any]:
        # layercal's token ids (TransformerLens would prepend BOS to strings), padded on the right
        ids, mask = pad_batch(tok, [inp.seqs[i] for i in idx], dev, "right")
        with torch.no_grad():
            logits, cache = bridge.run_with_cache(ids, attention_mask=mask, names_filter=names)
        last = mask.sum(1) - 1
        rows = torch.arange(len(idx), device=logits.device)
        resid = torch.stack([cache[n][rows, last] for n in names], dim=1)
        return resid, logits[rows, last][:, inp.ans_ids]

    batches = inp.sorted if sort else inp.unsorted
    return _loop_variant(args, inp, torch.device(dev), batches, step, work)


def run_nnsight(args: argparse.Namespace, work: Path, sort: bool) -> dict[str, Any]:
    import torch
    from nnsight.modeling.transformers import TransformersModel

    from extract.model.arch import ARCHS
    from extract.model.load import pick_device

    path, lm, dtype = _peer_source(args)
    dev = pick_device(args.device)
    if lm is not None:
        model = TransformersModel(lm.model, tokenizer=lm.tokenizer)
    else:
        model = TransformersModel(
            path, task="text-generation", dispatch=True, device_map=dev, dtype=dtype
        )
    tok = model.tokenizer
    tok.padding_side = "left"
    inp = _Inputs(args, tok, torch.device(dev))
    entry = ARCHS[model.config.model_type]

    def envoy(paths: str) -> Any:
        for p in paths.split("|"):
            obj: Any = model
            try:
                for part in p.split("."):
                    obj = getattr(obj, part)
                return obj
            except AttributeError:
                continue
        raise AttributeError(paths)

    blocks, unembed = envoy(entry.blocks), envoy(entry.unembed)

    def step(idx: list[int]) -> tuple[Any, Any]:
        rows: list[Any] = []  # created before the trace (nnsight 0.8)
        with torch.no_grad(), model.trace([inp.prompts[i] for i in idx]):
            rows.append(blocks[0].input[:, -1].save())  # read in execution order
            for block in blocks:
                rows.append(block.output[:, -1].save())
            logits = unembed.output[:, -1].save()
        return torch.stack(rows, dim=1), logits[:, inp.ans_ids]

    batches = inp.sorted if sort else inp.unsorted
    return _loop_variant(args, inp, torch.device(dev), batches, step, work)


def run_layercal(args: argparse.Namespace, work: Path, variant: str = "layercal") -> dict[str, Any]:
    import torch

    from extract.forward.capture import run_batch
    from extract.forward.tokens import pad_batch
    from extract.model.arch import resolve
    from extract.run import extract
    from layercal.format import ACTIVATION_ARRAYS

    lm = _load(args)
    inp = _Inputs(args, lm.tokenizer, lm.device, variant)
    short = sorted(range(len(inp.seqs)), key=lambda i: inp.lengths[i])[:4]
    ids, mask = pad_batch(lm.tokenizer, [inp.seqs[i] for i in short], lm.device, "left")
    run_batch(lm.model, resolve(lm.model), ids, mask, inp.ans_ids)  # warm-up, as for the others
    store = work / "store.zarr"
    _reset_peaks(lm.device)
    t0, c0 = time.perf_counter(), time.process_time()
    summary = extract(_config(args, str(store), variant), loaded=lm)
    if lm.device.type == "cuda":
        torch.cuda.synchronize()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    per_ex = sum(
        f.stat().st_size
        for name in ACTIVATION_ARRAYS
        for f in (store / name).rglob("*")
        if f.is_file()
    )
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        **inp.counts(),
        "padded_tokens": padded_tokens(inp.lengths, inp.planned),
        "max_batch_tokens": inp.max_batch_tokens,
        "store": str(store),
        "activation_bytes": per_ex,
        "self_check_max_abs_diff": summary.self_check_max_abs_diff,
    }


RUNNERS: dict[str, Callable[[argparse.Namespace, Path], dict[str, Any]]] = {
    "bare": lambda a, w: run_bare(a, w, "planned"),
    "bare-sorted": lambda a, w: run_bare(a, w, "sorted"),
    "bare-unsorted": lambda a, w: run_bare(a, w, "unsorted"),
    "layercal": run_layercal,
    "layercal-full": lambda a, w: run_layercal(a, w, "layercal-full"),
    "layercal-zeroshot": lambda a, w: run_layercal(a, w, "layercal-zeroshot"),
    "naive": run_naive,
    "transformerlens": lambda a, w: run_transformerlens(a, w, sort=False),
    "transformerlens-sorted": lambda a, w: run_transformerlens(a, w, sort=True),
    "nnsight": lambda a, w: run_nnsight(a, w, sort=False),
    "nnsight-sorted": lambda a, w: run_nnsight(a, w, sort=True),
}


def _disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_child(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    if args.child in PEERS:
        module = {"transformerlens": "transformer_lens", "nnsight": "nnsight"}[PEERS[args.child]]
        try:
            __import__(module)
        except ImportError as e:
            return {"skipped": f"cannot import {module} ({e}); pip install {module}"}
    res = RUNNERS[args.child](args, work)
    res["peak_rss"] = _peak_rss()
    res["device"] = f"CPU ({os.cpu_count()} cores)"
    res["threads"] = torch.get_num_threads()
    if torch.cuda.is_available() and args.device in ("auto", "cuda"):
        res["peak_device_bytes"] = torch.cuda.max_memory_allocated()
        res["device"] = torch.cuda.get_device_name()
    res["disk_bytes"] = _disk_bytes(work)
    return res


# --------------------------------------------------------------------------------------------
# parent side: interleave, compare, report


def _spawn(args: argparse.Namespace, variant: str, work: Path) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        variant,
        "--workdir",
        str(work),
    ]
    for opt in (
        "n",
        "model",
        "batch_size",
        "data_dir",
        "dataset",
        "split",
        "seed",
        "dtype",
        "threads",
        "max_batch_tokens",
        "shots",
        "subjects",
    ):
        val = getattr(args, opt)
        if opt == "subjects" and val is not None:
            val = ",".join(val)
        if opt == "max_batch_tokens" and val is None:
            val = 0  # no cap; left out, the child would fall back to "auto"
        if val is not None:
            cmd += [f"--{opt.replace('_', '-')}", str(val)]
    cmd += ["--device", args.device]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1][len(RESULT_TAG) :])
    err = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    return {"failed": err[-1] if err else f"exit status {proc.returncode}", "stderr": proc.stderr}


def _resid_of(res: dict[str, Any]) -> Any:
    import numpy as np

    if res.get("store"):
        import zarr

        return np.asarray(zarr.open_array(res["store"] + "/resid", mode="r")[...])
    return np.load(res["resid"]) if res.get("resid") else None


def agreement(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """max |resid - layercal's resid| per variant (the naive loop: all depths but the last, which
    Hugging Face returns after the final norm)."""
    import numpy as np

    if "layercal" not in results:
        return {}
    ref = _resid_of(results["layercal"])
    out = {}
    for v, res in results.items():
        r = _resid_of(res) if v not in ("layercal", "layercal-zeroshot") else None
        if r is None or r.shape != ref.shape:
            continue
        depth = slice(0, -1) if v == "naive" else slice(None)
        out[v] = float(np.abs(r[:, depth] - ref[:, depth]).max())
    return out


def summarize(
    runs: dict[str, list[dict[str, Any]]],
    skipped: dict[str, str],
    diffs: dict[str, float],
    meta: dict[str, Any],
) -> dict[str, Any]:
    """Medians per variant and the headline ratios."""
    n = meta["n"]
    per: dict[str, dict[str, Any]] = {}
    for v, rs in runs.items():
        if not rs:
            continue
        secs = statistics.median(r["seconds"] for r in rs)
        disk = statistics.median(r.get("disk_bytes", 0) for r in rs)
        act = rs[0].get("activation_bytes", disk)
        per[v] = {
            "prompts_per_s": n / secs,
            "tokens_per_s": rs[0].get("tokens", meta["tokens"]) / secs,
            "seconds": [round(r["seconds"], 3) for r in rs],
            "cpu_seconds": [round(r.get("cpu_seconds", 0.0), 3) for r in rs],
            "padded_tokens": rs[0]["padded_tokens"],
            "peak_rss_bytes": int(statistics.median(r["peak_rss"] for r in rs)),
            "peak_device_bytes": rs[0].get("peak_device_bytes"),
            "disk_bytes_per_example": disk / n,
            "activation_bytes_per_example": act / n,
            "max_abs_diff_vs_layercal": diffs.get(v),
        }

    def ratio(a: str, b: str, key: str = "prompts_per_s") -> float | None:
        return per[a][key] / per[b][key] if a in per and b in per else None

    def cpu_ratio(a: str, b: str) -> float | None:
        if a not in per or b not in per or not all(per[v]["cpu_seconds"][0] for v in (a, b)):
            return None
        return statistics.median(per[b]["cpu_seconds"]) / statistics.median(per[a]["cpu_seconds"])

    peers = [v for v in per if v in PEERS]
    best = max(peers, key=lambda v: per[v]["prompts_per_s"]) if peers else None
    return {
        "layercal_vs_bare": ratio("layercal", "bare"),
        "layercal_vs_naive": ratio("layercal", "naive"),
        "layercal_vs_best_peer": ratio("layercal", best) if best else None,
        "best_peer": best,
        "peak_rss_vs_bare": ratio("layercal", "bare", "peak_rss_bytes"),
        "prompts_per_s": per["layercal"]["prompts_per_s"] if "layercal" in per else None,
        # CPU time (all threads) of the timed section: less sensitive to other load on the machine
        "layercal_vs_bare_cpu_time": cpu_ratio("layercal", "bare"),
        # --shots: wall-clock of full prompts over prefix reuse; peak RSS over the zero-shot run
        "prefix_reuse_vs_full": ratio("layercal", "layercal-full"),
        "peak_rss_reuse_vs_zeroshot": ratio("layercal", "layercal-zeroshot", "peak_rss_bytes"),
        **meta,
        "skipped": skipped,
        "variants": per,
    }


def report_lines(summary: dict[str, Any]) -> list[str]:
    per = summary["variants"]
    bare = per.get("bare", {}).get("prompts_per_s")
    gib = 2**30
    lines = [
        f"{'variant':<24}{'prompts/s':>10}{'tokens/s':>10}{'vs bare':>9}{'CPU s':>8}{'padded tok':>12}"
        f"{'peak RSS':>10}{'disk/ex':>10}{'max|diff|':>11}"
    ]
    for v, p in per.items():
        rel = f"{p['prompts_per_s'] / bare:.2f}x" if bare else "-"
        diff = p["max_abs_diff_vs_layercal"]
        lines.append(
            f"{v:<24}{p['prompts_per_s']:>10.2f}{p['tokens_per_s']:>10.0f}{rel:>9}"
            f"{statistics.median(p['cpu_seconds']):>8.1f}"
            f"{p['padded_tokens']:>12}{p['peak_rss_bytes'] / gib:>8.2f}GB"
            f"{p['disk_bytes_per_example'] / 1024:>8.0f}KB"
            f"{'-' if diff is None else f'{diff:.1e}':>11}"
        )
        if p.get("peak_device_bytes"):
            lines[-1] += f"  device peak {p['peak_device_bytes'] / gib:.2f}GB"
    for v, why in summary["skipped"].items():
        lines.append(f"skipped {LABELS.get(PEERS.get(v, ''), v)} ({v}): {why}")

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    if summary.get("shots"):
        lines.append(
            f"{summary['shots']}-shot: prefix reuse {fmt(summary['prefix_reuse_vs_full'])}x "
            f"faster than full prompts; peak RSS / zero-shot "
            f"{fmt(summary['peak_rss_reuse_vs_zeroshot'])}"
        )
        return lines
    lines.append(
        f"layercal / bare {fmt(summary['layercal_vs_bare'])} (CPU time: "
        f"{fmt(summary['layercal_vs_bare_cpu_time'])}), / naive "
        f"{fmt(summary['layercal_vs_naive'])}, / best peer ({summary['best_peer']}) "
        f"{fmt(summary['layercal_vs_best_peer'])}; peak RSS / bare {fmt(summary['peak_rss_vs_bare'])}"
    )
    return lines


def run_parent(args: argparse.Namespace) -> dict[str, Any]:
    variants = args.variants
    root = Path(tempfile.mkdtemp(prefix="layercal-bench-"))
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    skipped: dict[str, str] = {}
    diffs: dict[str, float] = {}
    try:
        for r in range(args.repeats):
            first: dict[str, dict[str, Any]] = {}
            for v in variants:
                if v in skipped:
                    continue
                work = root / f"r{r}-{v}"
                res = _spawn(args, v, work)
                if "skipped" in res or "failed" in res:
                    why = res.get("skipped") or f"failed: {res['failed']}"
                    if v not in PEERS:
                        sys.stderr.write(res.get("stderr", ""))
                        raise SystemExit(f"{v} failed: {why}")
                    skipped[v] = why
                    print(f"skipped {LABELS[PEERS[v]]} ({v}): {why}", flush=True)
                    continue
                if not any(runs.values()):
                    print(
                        f"{res['n']} prompts ({res['tokens']} tokens) on {res['device']}",
                        flush=True,
                    )
                runs[v].append(res)
                print(
                    f"[{r + 1}/{args.repeats}] {v:<24} {res['seconds']:8.2f} s  "
                    f"{res['n'] / res['seconds']:6.2f} prompts/s  "
                    f"peak RSS {res['peak_rss'] / 2**30:.2f} GB",
                    flush=True,
                )
                if r == 0:
                    first[v] = res
                else:
                    shutil.rmtree(work, ignore_errors=True)
            if r == 0:
                diffs = agreement(first)
                for v in first:
                    shutil.rmtree(root / f"r0-{v}", ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    first_run = next(rs[0] for rs in runs.values() if rs)
    info = {
        "n": first_run["n"],
        "tokens": first_run["tokens"],
        "batch_size": args.batch_size,
        "model": args.model,
        "device": first_run["device"],
        "repeats": args.repeats,
        "threads": args.threads or first_run["threads"],
        "shots": args.shots,
        "subjects": (args.subjects or SHOT_SUBJECTS) if args.shots else None,
    }
    return summarize(runs, skipped, diffs, info)


def _batch_size(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("--batch-size must be at least 1")
    return n


def _variants(text: str) -> list[str]:
    vs = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in vs if v not in VARIANTS]
    if bad or not vs:
        raise argparse.ArgumentTypeError(
            f"unknown variants {bad}; choose from {', '.join(VARIANTS)}"
        )
    return vs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from extract.config import parse_max_batch_tokens  # the same option as `layercal extract`

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=512, help="number of prompts (default 512)")
    p.add_argument(
        "--model",
        default="smollm2-135m",
        help="anything `layercal extract --model` takes, or random:llama-3.2-1b / random:llama-3-8b",
    )
    p.add_argument("--batch-size", type=_batch_size, default=16)
    p.add_argument(
        "--max-batch-tokens",
        type=parse_max_batch_tokens,
        default="auto",
        help="layercal's token budget per forward (extract --max-batch-tokens); `bare` uses the "
        "same batches, the `-sorted` variants plain sorted batches of --batch-size",
    )
    p.add_argument("--repeats", type=int, default=2, help="interleaved repeats (median)")
    p.add_argument(
        "--variants",
        type=_variants,
        default=None,
        help=f"comma-separated subset of {','.join(VARIANTS)} (default: all but bare-unsorted "
        f"and the --shots ones; with --shots: {','.join(SHOT_VARIANTS)})",
    )
    p.add_argument(
        "--shots",
        type=int,
        default=0,
        help="K-shot prompts of --n questions of each of --subjects, with and without prefix "
        "reuse and zero-shot: prints prefix_reuse_vs_full (wall-clock ratio) and "
        "peak_rss_reuse_vs_zeroshot",
    )
    p.add_argument(
        "--subjects",
        type=lambda t: [x.strip() for x in t.split(",") if x.strip()],
        default=None,
        help=f"MMLU subjects for --shots (default {','.join(SHOT_SUBJECTS)})",
    )
    p.add_argument("--data-dir", default=None, help="else $LAYERCAL_DATA_DIR, else ../shared/data")
    p.add_argument("--dataset", default="mmlu")
    p.add_argument("--split", default="test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu", "mps"])
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads per run (default: torch's choice); 1 makes CPU time a measure "
        "of work that other load on the machine hardly changes",
    )
    p.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.variants is None:
        args.variants = list(SHOT_VARIANTS if args.shots else DEFAULT_VARIANTS)
    if args.data_dir is None:
        env = os.environ.get("LAYERCAL_DATA_DIR")
        args.data_dir = env or str(_HERE.parents[1] / "shared" / "data")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(RESULT_TAG + json.dumps(run_child(args)), flush=True)
        return 0
    print(
        f"model {args.model}, batch {args.batch_size}, {args.repeats} interleaved repeats of "
        f"{', '.join(args.variants)}",
        flush=True,
    )
    summary = run_parent(args)
    print("\n".join(report_lines(summary)))
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
