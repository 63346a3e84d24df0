"""``layercal`` subcommands of the analysis stage (CPU only, never imports torch).

One module per command group: :mod:`~analyze.cli.summary`, :mod:`~analyze.cli.analyze`,
:mod:`~analyze.cli.interventions` (``nullspace``, ``direction fit``, ``steer``),
:mod:`~analyze.cli.neurons` (``neurons``); the ``store``
commands come from :mod:`layercal.store.cli`. Their shared options are in
:mod:`layercal.cliargs`. ``steer --online`` runs the model: ``layercal.cli`` passes the
model-backed sweeper in (``online_sweeper``), so nothing here imports the extraction stage.
"""

from __future__ import annotations

import argparse
from typing import Any

from analyze.cli import analyze as analyze_command
from analyze.cli import interventions, neurons, summary
from analyze.cli.interventions import OnlineSweeper
from layercal.store import cli as store_cli

__all__ = ["OnlineSweeper", "add_subcommands", "main"]


def add_subcommands(sub: Any, *, online_sweeper: OnlineSweeper | None = None) -> None:
    """Register summary, store, analyze, nullspace, direction, steer and neurons on ``sub``.

    ``online_sweeper``: builds the model-backed sweeper of ``steer --online`` (None: that
    option is refused with a message naming the ``layercal`` command)."""
    summary.add_parser(sub)
    store_cli.add_parser(sub)  # `layercal store ...`: the store tools, beside the format
    analyze_command.add_parser(sub)
    interventions.add_parser(sub, online_sweeper=online_sweeper)
    neurons.add_parser(sub)


def main(argv: list[str] | None = None) -> int:
    """Run an analysis subcommand without going through ``layercal`` (no torch import)."""
    p = argparse.ArgumentParser(prog="layercal")
    add_subcommands(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    return int(args.func(args))
