"""``layercal`` subcommands of the analysis stage (CPU only, never imports torch).

One module per command group: :mod:`~analyze.cli.summary`, :mod:`~analyze.cli.analyze`,
:mod:`~analyze.cli.interventions` (``nullspace``, ``direction fit``, ``steer``),
:mod:`~analyze.cli.explore`, :mod:`~analyze.cli.neurons`, :mod:`~analyze.cli.lens`
(``lens fit``); their shared
options (``--storage-options``, ``--scheduler``) are in :mod:`~analyze.cli.options`. Each
package registers its own commands: :func:`add_subcommand` is how the ``layercal`` command
asks for one of :data:`COMMANDS`. ``steer --online`` runs the model: ``layercal`` passes the
extraction stage's sweeper in (``online_sweeper``), so nothing here imports that stage.
"""

from __future__ import annotations

import argparse
from typing import Any

from analyze.cli import analyze as analyze_command
from analyze.cli import explore as explore_command
from analyze.cli import interventions, lens, neurons, summary
from analyze.cli.interventions import OnlineSweeper

__all__ = ["COMMANDS", "OnlineSweeper", "add_subcommand", "add_subcommands", "main"]

# the commands of this stage, in `layercal --help` order
COMMANDS = (
    "summary",
    "analyze",
    "nullspace",
    "direction",
    "steer",
    "explore",
    "neurons",
    "lens",
)


def add_subcommand(sub: Any, name: str, *, online_sweeper: OnlineSweeper | None = None) -> None:
    """Register the command ``name`` (one of :data:`COMMANDS`) on the subparsers ``sub``.

    ``online_sweeper``: builds the model-backed sweeper of ``steer --online`` (None: that
    option is refused with a message naming the ``layercal`` command)."""
    if name == "steer":
        interventions.add_steer(sub, online_sweeper=online_sweeper)
        return
    register = {
        "summary": summary.add_parser,
        "analyze": analyze_command.add_parser,
        "nullspace": interventions.add_nullspace,
        "direction": interventions.add_direction,
        "explore": explore_command.add_parser,
        "neurons": neurons.add_parser,
        "lens": lens.add_parser,
    }
    if name not in register:
        raise ValueError(f"analyze has no command {name!r}; its commands: {', '.join(COMMANDS)}")
    register[name](sub)


def add_subcommands(sub: Any, *, online_sweeper: OnlineSweeper | None = None) -> None:
    """Register every command of :data:`COMMANDS` on ``sub``, in order."""
    for name in COMMANDS:
        add_subcommand(sub, name, online_sweeper=online_sweeper)


def main(argv: list[str] | None = None) -> int:
    """Run an analysis subcommand without going through ``layercal`` (no torch import)."""
    p = argparse.ArgumentParser(prog="layercal")
    add_subcommands(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    return int(args.func(args))
