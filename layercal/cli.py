"""``layercal`` command: one entry point, one subcommand per stage.

Subcommands import their stage lazily, so ``layercal analyze`` never imports torch.
"""

# (the docstring above is `layercal --help`'s description.) This module ties the stages together
# and reaches each only through its package API (`extract`, `analyze`, and the store tools of
# layercal.store): every package registers its own commands (`add_subcommand`), and `steer
# --online` is handed the extraction stage's `model_sweeper` without this module reading any of
# steering's options, so analyze never imports extract.

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

# `layercal --help` lists the commands in this order; the package of each registers it
ORDER = (
    "extract",
    "summary",
    "store",
    "analyze",
    "nullspace",
    "direction",
    "steer",
    "explore",
    "neurons",
    "lens",
)


def model_sweeper(store: str, model: str, **options: Any) -> tuple[Any, dict[str, Any]]:
    """``layercal steer --online``: the sweeper of ``store`` with ``model`` loaded, built by the
    extraction stage (:func:`extract.model_sweeper`); imports torch only now."""
    import extract

    return extract.model_sweeper(store, model, **options)


def registry() -> dict[str, Any]:
    """Command name -> the function of the package that registers it on a subparsers object."""
    import analyze
    import extract
    from layercal.store import cli as store_cli

    def analysis(sub: Any, name: str) -> None:
        analyze.add_subcommand(sub, name, online_sweeper=model_sweeper)

    out: dict[str, Any] = {}
    for commands, add in (
        (extract.COMMANDS, extract.add_subcommand),
        (store_cli.COMMANDS, store_cli.add_subcommand),
        (analyze.COMMANDS, analysis),
    ):
        out.update(dict.fromkeys(commands, add))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="layercal", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    add = registry()
    for name in ORDER:
        add[name](sub, name)
    args = p.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
