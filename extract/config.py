"""The extraction's configuration, defined once: :class:`ExtractConfig`.

Each field carries its command-line option as metadata (:func:`option`): ``layercal extract``'s
flags are generated from the fields (:func:`add_arguments`), parsed arguments become a config
(:func:`config_from_args`), and the settings a run records in the store come from the fields
marked ``recorded`` (:func:`run_settings`). :class:`ExtractSummary` is what a run reports.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from layercal.format import DEFAULT_BLOCK

DType = Literal["auto", "bfloat16", "float16", "float32"]
Device = Literal["auto", "cuda", "cpu", "mps"]
SELECTION = "selection"  # the mutually exclusive --subjects / --category


def parse_csv(text: str) -> list[str]:
    """``--subjects a,b``: comma-separated names."""
    return [s.strip() for s in text.split(",") if s.strip()]


def parse_max_batch_tokens(text: str) -> int | str | None:
    """``--max-batch-tokens``: a number of tokens, 'auto', or 0 for no cap (None)."""
    if text == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        msg = f"expected a number of tokens or 'auto', got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 0:
        raise argparse.ArgumentTypeError("--max-batch-tokens must be >= 0 (0: no cap)")
    return value or None


def parse_batch_size(text: str) -> int | str:
    """``--batch-size``: a positive integer or 'auto'."""
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or 'auto', got {text!r}"
        ) from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1 (or 'auto')")
    return n


CAPTURES = ("mlp_last",)  # extra activations a store can record (docs/store-format.md)


def parse_capture(text: str) -> tuple[str, ...]:
    """``--capture mlp_last``: comma-separated names of CAPTURES."""
    names = tuple(dict.fromkeys(parse_csv(text)))
    unknown = [n for n in names if n not in CAPTURES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown capture {', '.join(unknown)}; available: {', '.join(CAPTURES)}"
        )
    return names


def parse_shard(text: str) -> tuple[int, int]:
    """``--shard i/n`` -> (i, n); ValueError naming the option otherwise."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def option(
    flag: str,
    help: str | None = None,
    *,
    type: Callable[[str], Any] | None = None,
    choices: Sequence[str] | None = None,
    metavar: str | None = None,
    flag_default: str | None = None,
    parse: Callable[[Any], Any] | None = None,
    negate: bool = False,
    group: str | None = None,
    recorded: bool = False,
) -> dict[str, Any]:
    """Field metadata: the command-line option of a config field.

    ``flag_default``: the option's default as text, when the field holds it parsed (``parse``
    turns the option's value into the field's). ``negate``: a ``store_true`` flag that sets the
    field to False (``--no-progress``). ``group``: options of one group exclude each other.
    ``recorded``: the run records the field's value in the store (:func:`run_settings`).
    """
    return {
        "cli": {
            "flag": flag,
            "help": help,
            "type": type,
            "choices": choices,
            "metavar": metavar,
            "flag_default": flag_default,
            "parse": parse,
            "negate": negate,
            "group": group,
        },
        "recorded": recorded,
    }


@dataclass(frozen=True, kw_only=True)
class ExtractConfig:
    """Everything an extraction needs to know, in the order of ``layercal extract --help``."""

    model: str = field(
        metadata=option(
            "--model",
            "built-in name (smollm2-135m), hub id (owner/name), local folder or .gguf file",
        )
    )
    revision: str | None = field(
        default=None, metadata=option("--revision", "hub revision (branch, tag or commit)")
    )
    dataset: str = field(
        metadata=option(
            "--dataset", "mmlu, truthfulqa-mc1, or a local CSV/JSONL/Parquet multiple-choice file"
        )
    )
    split: str = field(default="test", metadata=option("--split", "test | validation | dev (MMLU)"))
    subjects: Sequence[str] | None = field(
        default=None,
        metadata=option(
            "--subjects", "comma-separated MMLU subjects", type=parse_csv, group=SELECTION
        ),
    )
    category: str | None = field(
        default=None,
        metadata=option(
            "--category",
            choices=["humanities", "stem", "social_sciences", "other"],
            group=SELECTION,
        ),
    )
    data_dir: str | None = field(
        default=None,
        metadata=option(
            "--data-dir",
            "folder holding mmlu/ and truthfulqa/ (else $LAYERCAL_DATA_DIR, else the hub)",
        ),
    )
    hub_repo: str | None = field(
        default=None,
        metadata=option(
            "--hub-repo",
            "dataset repo for the hub fallback (default cais/mmlu, truthfulqa/truthful_qa)",
        ),
    )
    limit: int | None = field(
        default=None,
        metadata=option(
            "--limit", "a seeded random sample of N examples, kept in dataset order", type=int
        ),
    )
    # e.g. "40,humanities=120" (extract/data/sampling.py)
    per_subject: str | None = field(
        default=None,
        metadata=option(
            "--per-subject",
            "a seeded sample of at most N examples of each subject; NAME=N (a category or a "
            "subject, N or 'all') overrides it, e.g. 40,humanities=120; applied before --limit",
            metavar="N[,NAME=N...]",
        ),
    )
    seed: int = field(
        default=0,
        metadata=option("--seed", "seed for --limit, --per-subject and option shuffles", type=int),
    )
    shots: int = field(
        default=0,
        metadata=option("--shots", "k-shot exemplars per subject from MMLU dev", type=int),
    )
    # a template file (JSON/TOML); None = the lm-eval MMLU template
    template: str | None = field(
        default=None,
        metadata=option("--template", "prompt template file (JSON/TOML); default: lm-eval MMLU"),
    )
    out: str = field(metadata=option("--out", "store path, e.g. stores/NAME.zarr"))
    # "auto": the largest that fits (extract.forward.autobatch)
    batch_size: int | Literal["auto"] = field(
        default=16,
        metadata=option(
            "--batch-size",
            "prompts per forward pass, or 'auto': the largest power of two up to 256 that fits",
            type=parse_batch_size,
            recorded=True,
        ),
    )
    # padded tokens per forward pass (extract.forward.batching); "auto": a cap on CPU, none on GPUs
    max_batch_tokens: int | Literal["auto"] | None = field(
        default="auto",
        metadata=option(
            "--max-batch-tokens",
            "cap on padded tokens per forward pass (prompts x longest prompt); batches of long "
            "prompts get fewer prompts. 'auto' (default): 1024 on CPU, no cap on GPUs; 0: no cap",
            type=parse_max_batch_tokens,
            metavar="N|auto|0",
            recorded=True,
        ),
    )
    dtype: DType = field(
        default="auto",
        metadata=option(
            "--dtype",
            "auto (default): chosen by the hardware and printed: bfloat16 on a CPU that computes "
            "it natively (AVX-512 BF16 or AMX: about 2x float32, per-layer ECE within ~0.02) and "
            "on CUDA GPUs that support it; float32 elsewhere (an AVX2-only CPU emulates bf16 at "
            "about 0.3x float32's speed; forcing it there prints a warning). docs/benchmarks.md",
            choices=["auto", "bfloat16", "float16", "float32"],
            recorded=True,
        ),
    )
    device: Device = field(
        default="auto", metadata=option("--device", choices=["auto", "cuda", "cpu", "mps"])
    )
    device_map: str | None = field(
        default=None,
        metadata=option("--device-map", 'e.g. "auto" to spread a model larger than one GPU'),
    )
    attn_implementation: str | None = field(
        default=None,
        metadata=option("--attn-implementation", "eager | sdpa | flash_attention_2"),
    )
    trust_remote_code: bool = field(default=False, metadata=option("--trust-remote-code"))
    resume: bool = field(
        default=False, metadata=option("--resume", "continue an interrupted store")
    )
    shard: tuple[int, int] = field(
        default=(0, 1),
        metadata=option(
            "--shard",
            "i/n: fill blocks b with b %% n == i",
            flag_default="0/1",
            parse=parse_shard,
            recorded=True,
        ),
    )
    capture: tuple[str, ...] = field(
        default=(),
        metadata=option(
            "--capture",
            "also store mlp_last: the last block's MLP hidden activation at the final token "
            "(the down projection's input) and its output weights, for `layercal neurons`",
            type=parse_capture,
            metavar="mlp_last",
        ),
    )
    block: int = field(
        default=DEFAULT_BLOCK,
        metadata=option("--block-size", "examples per write block (multiple of 128)", type=int),
    )
    padding_side: str = field(
        default="left",
        metadata=option("--padding-side", choices=["left", "right"], recorded=True),
    )
    progress: bool = field(default=True, metadata=option("--no-progress", negate=True))
    prefix_reuse: bool = field(
        default=True,
        metadata=option(
            "--no-prefix-reuse",
            "run every prompt in full instead of computing each subject's shared prompt prefix "
            "(header and --shots exemplars) once and only the questions against it",
            negate=True,
            recorded=True,
        ),
    )


def _options() -> list[tuple[dataclasses.Field[Any], dict[str, Any]]]:
    return [(f, f.metadata["cli"]) for f in dataclasses.fields(ExtractConfig)]


def _dest(cli: dict[str, Any]) -> str:
    """argparse's own attribute name for the option (``--block-size`` -> ``block_size``)."""
    return str(cli["flag"]).lstrip("-").replace("-", "_")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``layercal extract``, one per field of :class:`ExtractConfig`."""
    groups: dict[str, Any] = {}
    for f, cli in _options():
        target: Any = p
        if cli["group"] is not None:
            if cli["group"] not in groups:
                groups[cli["group"]] = p.add_mutually_exclusive_group()
            target = groups[cli["group"]]
        kw: dict[str, Any] = {}
        if cli["help"] is not None:
            kw["help"] = cli["help"]
        if cli["negate"] or f.type == "bool":
            kw["action"] = "store_true"
            target.add_argument(cli["flag"], **kw)
            continue
        if f.default is dataclasses.MISSING:
            kw["required"] = True
        elif cli["flag_default"] is not None:
            kw["default"] = cli["flag_default"]
        elif f.default is not None:
            kw["default"] = f.default
        for key in ("type", "choices", "metavar"):
            if cli[key] is not None:
                kw[key] = cli[key]
        target.add_argument(cli["flag"], **kw)


def config_from_args(args: argparse.Namespace) -> ExtractConfig:
    """The config of parsed ``add_arguments`` options; ValueError for a value a field refuses
    (``--shard``)."""
    values: dict[str, Any] = {}
    for f, cli in _options():
        value = getattr(args, _dest(cli))
        if cli["negate"]:
            value = not value
        elif cli["parse"] is not None:
            value = cli["parse"](value)
        values[f.name] = value
    return ExtractConfig(**values)


def run_settings(cfg: ExtractConfig) -> dict[str, Any]:
    """The settings a run records in the store (``attrs.layercal.runs``): the fields marked
    ``recorded``, as the option would be written (``shard``: ``"i/n"``)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        if f.metadata["recorded"]:
            value = getattr(cfg, f.name)
            out[f.name] = f"{value[0]}/{value[1]}" if f.name == "shard" else value
    return out


@dataclass
class ExtractSummary:
    """What a run did: the store, how much is written, how long it took, the self-check."""

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
