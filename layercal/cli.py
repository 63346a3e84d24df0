"""``layercal`` command: one entry point, one subcommand per stage.

Subcommands import their stage lazily, so ``layercal analyze`` never imports torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="layercal", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    from extract.cli import add_arguments as add_extract

    add_extract(sub.add_parser("extract", help="model + benchmark -> activation store (torch)"))

    from analyze.cli import add_subcommands

    add_subcommands(sub)
    args = p.parse_args(argv)
    if args.command == "extract":
        from extract.cli import run

        return run(args)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
