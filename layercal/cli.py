"""``layercal`` command: one entry point, one subcommand per stage.

Subcommands import their stage lazily, so ``layercal analyze`` never imports torch.
"""

# (the docstring above is `layercal --help`'s description.) This is the one module that sees
# both stages: it registers `extract` (extract.cli) and the analysis commands (analyze.cli, the
# `store` tools included), and hands `steer --online` the model-backed sweeper of the extraction
# stage (online_sweeper), so analyze never imports extract.

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any


def online_sweeper(args: argparse.Namespace, ds: Any, direction: Any) -> tuple[Any, dict[str, Any]]:
    """``layercal steer --online``: the store's model loaded, as a sweeper of that store
    (:func:`extract.online.steer.model_sweeper`); imports torch only now."""
    from extract.online.steer import model_sweeper

    source = str(ds.encoding.get("source") or args.store)
    layer = int(ds.sizes["layer"]) - 1 if args.layer is None else args.layer
    return model_sweeper(
        source,
        args.model,
        layer=layer,
        dtype=args.dtype,
        device=args.device,
        positions=args.positions,
        batch_size=args.batch_size,
        kv=not args.no_kv,
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="layercal", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    from extract.cli import add_arguments as add_extract

    add_extract(sub.add_parser("extract", help="model + benchmark -> activation store (torch)"))

    from analyze.cli import add_subcommands

    add_subcommands(sub, online_sweeper=online_sweeper)
    args = p.parse_args(argv)
    if args.command == "extract":
        from extract.cli import run

        return run(args)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
