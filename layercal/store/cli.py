"""``layercal store info|verify|pack|publish|merge``: the store tools on the command line.

Exit status: 0 on success, 1 when the store fails a check or an operation is refused (the
message says what to do). Never imports torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from layercal.cliargs import SO_HELP, add_storage_options

COMMANDS = ("store",)  # what the store tools add to the `layercal` command


def add_subcommand(sub: Any, name: str = "store") -> None:
    """Register the ``store`` command group (the only one of :data:`COMMANDS`) on ``sub``."""
    if name not in COMMANDS:
        raise ValueError(
            f"layercal.store has no command {name!r}; its commands: {', '.join(COMMANDS)}"
        )
    add_parser(sub)


def add_parser(sub: Any) -> None:
    """Register the ``store`` subcommand group on an argparse subparsers object."""
    p = sub.add_parser("store", help="inspect, verify, pack, publish and merge activation stores")
    ss = p.add_subparsers(dest="store_command", required=True, metavar="COMMAND")

    q = ss.add_parser("info", help="one screen: model, data, shapes, sizes, completeness")
    q.add_argument("store", help="store folder, FILE.zip or fsspec URL")
    q.add_argument("--json", action="store_true", help="print a JSON object instead")
    add_storage_options(q)
    q.set_defaults(func=run_info)

    q = ss.add_parser("verify", help="recompute checksums and the lens self-check; exit 1 if bad")
    q.add_argument("store", help="store folder, FILE.zip or fsspec URL")
    q.add_argument("--sample", type=int, default=256, help="examples for the lens self-check")
    q.add_argument("--seed", type=int, default=0, help="seed of the self-check sample")
    q.add_argument("--json", action="store_true", help="print a JSON object instead")
    add_storage_options(q)
    q.set_defaults(func=run_verify)

    q = ss.add_parser("pack", help="pack a store into one .zip (opened directly by analysis)")
    q.add_argument("store", help="store folder or fsspec URL")
    q.add_argument("-o", "--out", required=True, help="FILE.zip to write")
    _ship_flags(q)
    q.set_defaults(func=run_pack)

    q = ss.add_parser("publish", help="copy to an fsspec destination with a dataset card")
    q.add_argument("store", help="store folder, FILE.zip or fsspec URL")
    q.add_argument("dest", help="destination: folder, file://, s3://, gs://, hf://, memory://")
    add_storage_options(q, help="for DEST: " + SO_HELP)
    add_storage_options(q, "--source-storage-options", help="for STORE: " + SO_HELP)
    _ship_flags(q)
    q.set_defaults(func=run_publish)

    q = ss.add_parser("merge", help="combine shard stores written by separate machines")
    q.add_argument("out", help="new local store folder to write")
    q.add_argument("shards", nargs="+", metavar="SHARD_STORE", help="shard stores to combine")
    add_storage_options(q, help="for SHARD_STOREs given as URLs: " + SO_HELP)
    q.set_defaults(func=run_merge)


def _ship_flags(q: argparse.ArgumentParser) -> None:
    q.add_argument("--allow-partial", action="store_true", help="ship an incomplete store")
    q.add_argument("--overwrite", action="store_true", help="replace an existing target")
    q.add_argument("--no-verify", action="store_true", help="skip `store verify` of the source")


def _guard(func: Any) -> Any:
    """Turn refusals and unreadable stores into one ``error:`` line and exit status 1."""

    def run(args: argparse.Namespace) -> int:
        from layercal.format import StoreError

        try:
            return int(func(args))
        except (StoreError, ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1

    run.__doc__ = func.__doc__
    return run


@_guard
def run_info(args: argparse.Namespace) -> int:
    from layercal.store import format_info, store_info

    d = store_info(args.store, args.storage_options)
    print(json.dumps(d, indent=1) if args.json else format_info(d))
    return 0


@_guard
def run_verify(args: argparse.Namespace) -> int:
    from layercal.store import verify_store

    rep = verify_store(
        args.store,
        sample=args.sample,
        storage_options=args.storage_options,
        seed=args.seed,
    )
    if args.json:
        problems = [{"where": p.where, "what": p.what} for p in rep.problems]
        print(
            json.dumps(
                {"store": rep.store, "ok": rep.ok, "problems": problems, "notes": rep.notes},
                indent=1,
            )
        )
    else:
        print("\n".join(rep.lines()))
    return 0 if rep.ok else 1


@_guard
def run_pack(args: argparse.Namespace) -> int:
    from layercal.store import human_bytes, pack

    r = pack(
        args.store,
        args.out,
        allow_partial=args.allow_partial,
        overwrite=args.overwrite,
        verify=not args.no_verify,
    )
    print(f"packed {args.store} -> {r.target}: {r.files} members, {human_bytes(r.stored_bytes)}")
    print(
        f"open it with analyze.open_store({r.target!r}); check it with `layercal store verify {r.target}`"
    )
    return 0


@_guard
def run_publish(args: argparse.Namespace) -> int:
    from layercal.store import human_bytes, publish

    r = publish(
        args.store,
        args.dest,
        storage_options=args.storage_options,
        source_storage_options=args.source_storage_options,
        allow_partial=args.allow_partial,
        overwrite=args.overwrite,
        verify=not args.no_verify,
    )
    print(f"published {args.store} -> {r.target}: {r.files} files, {human_bytes(r.stored_bytes)}")
    print(
        f"dataset card: {r.target.rstrip('/')}/README.md; check with `layercal store verify {r.target}`"
    )
    if r.warning:
        print(f"warning: {r.warning}", file=sys.stderr)
    return 0


@_guard
def run_merge(args: argparse.Namespace) -> int:
    from layercal.store import merge

    r = merge(args.out, args.shards, storage_options=args.storage_options)
    for store in args.shards:
        blocks = [b for b, s in r.sources.items() if s == store]
        print(f"  {store}: {len(blocks)} blocks")
    if r.complete:
        print(f"merged {len(r.sources)} blocks into {r.out}: complete, metadata consolidated")
    else:
        print(
            f"merged {len(r.sources)} blocks into {r.out}; still missing blocks {r.missing[:20]}: "
            "extract the missing shards, then merge this store with them into a new OUT"
        )
    print(f"check it with `layercal store verify {r.out}`")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m layercal.store.cli ...`` without the ``layercal`` entry point."""
    p = argparse.ArgumentParser(prog="layercal")
    add_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
