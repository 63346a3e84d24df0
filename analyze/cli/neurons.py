"""``layercal neurons STORE --out DIR``: where the correction is made, from a store (CPU).

Writes ``blocks.csv`` (one row per depth: each block's null-space write and the last layer
without it; :mod:`analyze.interventions.blocks`), and, for a store extracted with
``--capture mlp_last``, ``neurons.csv`` (one row per last-block neuron) and ``sets.csv``
(neurons ablated together; :mod:`analyze.interventions.neurons`); ``meta.json``,
``figures/`` and ``section.md``, which ``layercal analyze --out R`` includes when DIR is a
folder of R. A store without the capture gets ``blocks.csv`` and its section only, with a note.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from analyze.cli.options import add_remote_args, defaults_of
from layercal.cliargs import comma_ints


def add_parser(sub: Any) -> None:
    from analyze.interventions.blocks import run_blocks
    from analyze.interventions.neurons import run_neurons

    fn, fb = defaults_of(run_neurons), defaults_of(run_blocks)
    p = sub.add_parser(
        "neurons", help="per-block null-space writes and last-block neurons (CPU, offline)"
    )
    p.add_argument("store", help="store path or fsspec URL")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--direction", help="a `layercal direction fit` folder: cosines with the output weights"
    )
    p.add_argument("--k", type=int, help="size of the null space N_k (default round(0.01 d))")
    p.add_argument(
        "--candidates",
        type=int,
        default=fn["n_candidates"],
        help="candidate neurons (default %(default)s)",
    )
    p.add_argument(
        "--norm-quantile",
        type=float,
        default=fn["norm_quantile"],
        help="candidates come from the neurons whose output norm is at least this quantile",
    )
    p.add_argument(
        "--controls", type=int, default=fn["n_controls"], help="matched-norm controls per candidate"
    )
    p.add_argument(
        "--top-n",
        type=comma_ints,
        default=list(fn["top_n"]),
        help="sets of top candidates (1,3,10)",
    )
    p.add_argument(
        "--random", type=int, default=fb["n_random"], help="random subspaces of the block control"
    )
    p.add_argument("--bins", type=int, default=fn["n_bins"])
    p.add_argument("--n-boot", type=int, default=fn["n_boot"])
    p.add_argument("--seed", type=int, default=0, help="seed of resamples and controls")
    p.add_argument("--allow-partial", action="store_true", help="use the written examples only")
    p.add_argument("--svd-method", choices=["auto", "scipy", "dask"], default="auto")
    p.add_argument("--cache-dir", help="SVD cache folder (default: next to the store)")
    add_remote_args(p)
    p.set_defaults(func=run_neurons_command)


def _compute(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    from analyze.interventions.artifact import Direction, check_direction
    from analyze.interventions.blocks import run_blocks
    from analyze.interventions.neurons import capture_problem, run_neurons
    from analyze.interventions.svd import unembed_svd
    from analyze.lens.store import open_store, store_hash

    ds = open_store(
        args.store, storage_options=args.storage_options, allow_partial=args.allow_partial
    )
    svd = unembed_svd(ds, method=args.svd_method, cache_dir=args.cache_dir)
    blocks = run_blocks(
        ds,
        svd,
        k=args.k,
        n_random=args.random,
        seed=args.seed,
        n_bins=args.bins,
        n_boot=args.n_boot,
    )
    meta: dict[str, Any] = {"store": args.store, "store_hash": store_hash(ds)}
    meta["blocks"], meta["neurons"] = blocks.meta, None
    neurons = None
    problem = capture_problem(ds)
    if problem is None:
        vector = None
        if args.direction:
            direction = Direction.load(args.direction)
            check_direction(direction, ds)
            vector = direction.vector
        neurons = run_neurons(
            ds,
            svd,
            k=args.k,
            n_candidates=args.candidates,
            norm_quantile=args.norm_quantile,
            n_controls=args.controls,
            top_n=args.top_n,
            direction=vector,
            n_bins=args.bins,
            n_boot=args.n_boot,
            seed=args.seed,
        )
        meta["neurons"] = neurons.meta
        if args.direction:
            meta["neurons"]["direction_folder"] = args.direction
    else:
        meta["no_neurons"] = problem
    return blocks, neurons, meta


def run_neurons_command(args: argparse.Namespace) -> int:
    from analyze.interventions.artifact import DirectionError
    from analyze.lens.scheduler import scheduler_of
    from analyze.report.neuron_figures import blocks_figure, neuron_figures
    from analyze.report.neuron_section import neuron_section
    from analyze.report.render import to_markdown
    from layercal.format import StoreError

    try:
        with scheduler_of(args):
            blocks, neurons, meta = _compute(args)
    except (StoreError, ValueError, DirectionError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    blocks.table.write_csv(out / "blocks.csv")
    figs = blocks_figure(blocks.table, blocks.meta, out / "figures")
    wrote = ["blocks.csv"]
    if neurons is not None:
        neurons.neurons.write_csv(out / "neurons.csv")
        neurons.sets.write_csv(out / "sets.csv")
        figs |= neuron_figures(neurons.neurons, neurons.meta, out / "figures")
        wrote += ["neurons.csv", "sets.csv"]
    else:  # a folder reused for a store without the capture keeps no stale neuron tables
        for name in ("neurons.csv", "sets.csv"):
            (out / name).unlink(missing_ok=True)
    (out / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    table = None if neurons is None else neurons.neurons
    sets = None if neurons is None else neurons.sets
    blocks_md = neuron_section(blocks.table, meta, table, sets, figs)
    (out / "section.md").write_text(to_markdown(blocks_md, None, out, escape=False))
    print(f"wrote {out}/{', '.join(wrote)}, meta.json, figures/, section.md")
    if neurons is None:
        print(f"  note: {meta['no_neurons']}")
    else:
        m = neurons.meta
        print(f"  candidates: {m['candidates']}")
    return 0
