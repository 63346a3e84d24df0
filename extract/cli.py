"""``layercal extract``: command-line front end of :func:`extract.run.extract`."""

# (the docstring above is `python -m extract --help`'s description.) The options are the
# fields of extract.config.ExtractConfig: add_arguments generates them, config_from_args reads
# them back.

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from extract.config import add_arguments, config_from_args

__all__ = ["COMMANDS", "add_arguments", "add_subcommand", "main", "run"]

COMMANDS = ("extract",)  # what this stage adds to the `layercal` command


def run(args: argparse.Namespace) -> int:
    from extract.run import extract

    try:
        cfg = config_from_args(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not cfg.progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        summary = extract(cfg)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: finished blocks are kept; continue with the same command plus --resume "
            f"(store {cfg.out})",
            file=sys.stderr,
        )
        return 130
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("\n".join(summary.lines()))
    # a shard's job is done when its own blocks are; the store when every block is
    return 0 if (summary.shard_complete if cfg.shard[1] > 1 else summary.complete) else 1


def add_subcommand(sub: Any, name: str = "extract") -> None:
    """Register ``layercal extract`` on the subparsers ``sub`` (the only one of :data:`COMMANDS`);
    imports nothing heavy: torch loads when the command runs."""
    if name not in COMMANDS:
        raise ValueError(f"extract has no command {name!r}; its commands: {', '.join(COMMANDS)}")
    p = sub.add_parser(name, help="model + benchmark -> activation store (torch)")
    add_arguments(p)
    p.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="layercal extract", description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))
