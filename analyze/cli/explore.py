"""``layercal explore``: stores -> one self-contained HTML page to move through depth and look at
the questions (CPU only)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from analyze.cli.options import add_remote_args, add_resample_args, defaults_of

DESCRIPTION = """\
One self-contained HTML page (data and JavaScript inline; it makes no network request) showing
what one or more activation stores hold, depth by depth:

  a depth slider driving the reliability diagram (with bin counts), the confidence histogram
  and a metrics panel (accuracy, ECE, smECE where the analysis has it, MCE, Brier, NLL, mean
  confidence, option mass, each with its 95% interval); the metrics over depth with bands and
  the landmarks (rise, plateau, correction phase); a category and subject filter that
  recomputes the panels for the selection; a question view (text, options, correct answer, the
  probability of each option over depth, the commitment depth and the depths where confidence
  falls). Several stores (or a store through a fitted lens, --lens) are overlaid.

The numbers are those of `layercal analyze` with the same options, taken from its cache when
there is one: by default the cache of the report folder the page is written to
(dirname(OUT)/.cache, i.e. `layercal explore STORE -o REPORT_DIR/explorer.html` after
`layercal analyze STORE --out REPORT_DIR` reads nothing but the cache and the questions).
report.html links explorer.html when it is in the same folder.
"""


def add_parser(sub: Any) -> None:
    """Register ``explore`` on an argparse subparsers object."""
    from analyze.analysis import analyze_store

    fn = defaults_of(analyze_store)  # the analysis' own defaults, written once there

    p = sub.add_parser(
        "explore",
        help="one self-contained HTML page to move through depth and look at the questions",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("stores", nargs="+", metavar="STORE", help="store path or fsspec URL")
    p.add_argument(
        "-o", "--out", required=True, type=Path, metavar="FILE", help="the page (explorer.html)"
    )
    p.add_argument(
        "--lens",
        action="append",
        metavar="DIR",
        help="also show each store through the fitted lens saved in DIR (repeatable)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help="analysis cache (default: the .cache folder beside OUT, as `layercal analyze` "
        "writes it in its report folder)",
    )
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--title", help="the page's title (default: from the stores)")
    p.add_argument(
        "--bins", type=int, default=fn["bins"], metavar="M", help="ECE bins (default %(default)s)"
    )
    add_resample_args(p)
    p.add_argument(
        "--allow-partial", action="store_true", help="only the written examples of a partial store"
    )
    add_remote_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Analyse (or read from the cache) every store, then write the page; 1 on a store error."""
    from analyze.explore import AnalysisParams, load_lens_source, load_source, write_explorer
    from analyze.lens.scheduler import scheduler_of
    from layercal.errors import StoreError

    t0 = time.perf_counter()
    out: Path = args.out
    cache = None if args.no_cache else (args.cache_dir or out.parent / ".cache")
    params = AnalysisParams(
        bins=args.bins,
        n_boot=args.n_boot,
        seed=args.seed,
        mce_min_count=args.mce_min_count,
        allow_partial=args.allow_partial,
        storage_options=args.storage_options,
    )
    sources = []
    try:
        with scheduler_of(args):
            for store in args.stores:
                src = load_source(store, params, cache)
                how = "from cache" if src.result.meta.get("cache_hit") else "analysed"
                print(f"{store}: {src.name}, {src.result.meta.get('n_examples')} questions ({how})")
                sources.append(src)
                for lens in args.lens or []:
                    sources.append(load_lens_source(store, lens, params))
    except (StoreError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    path = write_explorer(sources, out, args.title)
    size = path.stat().st_size / 1e6
    print(f"explorer: {path.resolve()} ({size:.1f} MB, {time.perf_counter() - t0:.1f} s)")
    return 0
