"""``layercal`` subcommands of the analysis stage (CPU only, never imports torch)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

SO_HELP = (
    "JSON object of fsspec options for a store given as a URL, e.g. '{\"anon\": true}' or "
    '\'{"key": "...", "secret": "..."}\''
)


def storage_options_arg(text: str) -> dict[str, Any]:
    """argparse type of ``--storage-options``: a JSON object (credentials, endpoint, ...)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e}): {text!r}") from e
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def add_storage_options(
    p: Any, flag: str = "--storage-options", help: str = SO_HELP, **kw: Any
) -> None:
    """Add ``flag`` (parsed to a dict, or None when absent) to parser or group ``p``."""
    p.add_argument(flag, type=storage_options_arg, metavar="JSON", help=help, **kw)


def add_remote_args(p: argparse.ArgumentParser) -> None:
    """The options every analysis command shares: ``--storage-options`` and the scheduler."""
    from analyze._scheduler import add_scheduler_args

    add_storage_options(p)
    add_scheduler_args(p)


def add_subcommands(sub: Any) -> None:
    p = sub.add_parser("summary", help="per-layer accuracy and ECE of a store, as a table")
    p.add_argument("store", help="store path or fsspec URL")
    p.add_argument("--bins", type=int, default=10)
    p.add_argument("--allow-partial", action="store_true", help="analyse written examples only")
    add_remote_args(p)
    p.set_defaults(func=run_summary)
    __import__("analyze.store_cli").store_cli.add_parser(sub)  # `layercal store ...`
    __import__("analyze.analyze_cli").analyze_cli.add_parser(sub)  # `layercal analyze ...`
    __import__("analyze.ablate_cli").ablate_cli.add_parser(sub)  # nullspace, direction, steer


def layer_table(ds: Any, bins: int = 10) -> tuple[list[dict[str, float]], float]:
    """Per-layer accuracy, ECE and mean confidence from the lens recomputed on ``resid``.

    Returns the rows and the max |lens(last layer) - model logits| (must be ~0)."""
    from analyze.lens import answer_logits, check_against_recorded
    from analyze.metrics import per_layer_metrics

    z = answer_logits(ds).values  # (n, L, K)
    check_against_recorded(ds, z)
    model = np.asarray(ds["model_logits"].values)
    last_diff = float(np.abs(z[:, -1] - model).max())
    label = np.asarray(ds["label"].values).astype(np.int64)
    mask = np.asarray(ds["choice_mask"].values)
    m = per_layer_metrics(np.moveaxis(z, 1, 0), label, mask, n_bins=bins)
    rows = [
        {"layer": int(layer), **{k: float(m[k][i]) for k in ("accuracy", "ece", "mean_confidence")}}
        for i, layer in enumerate(ds["layer"].values)
    ]
    return rows, last_diff


def run_summary(args: argparse.Namespace) -> int:
    from analyze._scheduler import scheduler_of
    from analyze.store import open_store
    from layercal.format import StoreError

    try:
        ds = open_store(
            args.store, storage_options=args.storage_options, allow_partial=args.allow_partial
        )
        with scheduler_of(args):
            rows, last_diff = layer_table(ds, args.bins)
    except (StoreError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    ident = ds.attrs["layercal"]["identity"]
    print(
        f"store {args.store}: {ident['model']} on {ident['dataset']}/{ident['split']}, "
        f"{ds.sizes['example']} examples, {ds.sizes['layer']} depths"
    )
    print(f"{'layer':>5}  {'accuracy':>8}  {'ECE':>6}  {'conf':>6}")
    for r in rows:
        print(
            f"{r['layer']:>5}  {r['accuracy']:>8.3f}  {r['ece']:>6.3f}  {r['mean_confidence']:>6.3f}"
        )
    print(f"lens at the last layer vs the model's logits: max |diff| = {last_diff:.2e}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run an analysis subcommand without going through ``layercal`` (no torch import)."""
    p = argparse.ArgumentParser(prog="layercal")
    add_subcommands(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    return int(args.func(args))
