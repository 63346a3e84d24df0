"""``layercal lens fit``: a lens fitted from a store alone (CPU only, never imports torch)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from analyze.cli.options import add_remote_args
from layercal.cliargs import positive_int

DESCRIPTION = """\
Fit a lens on a store, from the stored residuals, final norm and unembedding alone (no model):
one translator per depth, read out through the stored final norm and unembedding, so every
`layercal analyze --lens DIR` table, landmark and figure is computed unchanged under it.

Kinds:
  temperature  one scalar T_l per depth: argmin KL(final || softmax(z_l / T_l)) (residual unchanged)
  shortcut     h -> h + h B_l + b_l towards the last depth's pre-norm residual (Din et al. 2023):
               ridge regression shrunk towards the identity (penalty inf = the logit lens), the
               penalty per depth by leave-one-out cross-validation inside the training folds
  tuned        h -> h + h B_l + b_l minimising KL(final || lens) (Belrose et al. 2023), from the
               identity, scipy L-BFGS, early stopping by inner validation (--max-iter)

Cross-fitted by question: the examples are divided into --folds folds stratified by subject
(seeded); each is read through the translator fitted on the other folds. Labels are never read.
KL is computed on a token set per fold: the answer options plus the --top-k tokens of largest
mean final probability over the fold's training examples (the store records no full-vocabulary
quantity from which a KL could be computed otherwise).

Output DIR: lens.json (kind, store hash, folds, token set, penalties, per-depth diagnostics:
held-out KL to final and top-1 agreement with final, beside the logit lens's) and its arrays
(docs/lenses.md). Refused on a store it was not fitted on unless `analyze --transfer`.
"""


def add_parser(sub: Any) -> None:
    """Register ``lens fit`` on an argparse subparsers object."""
    from analyze.lens.fitted.tokens import DEFAULT_TOP_K  # numpy only
    from analyze.lens.fitted.tuned import DEFAULT_MAX_ITER

    p = sub.add_parser("lens", help="lenses fitted from a store: temperature, shortcut, tuned")
    lsub = p.add_subparsers(dest="lens_command", required=True)
    f = lsub.add_parser(
        "fit",
        help="fit a lens on a store; writes a lens folder",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    f.add_argument("store", help="store path or fsspec URL")
    f.add_argument("-o", "--out", required=True, type=Path, metavar="DIR", help="lens folder")
    f.add_argument("--kind", required=True, choices=["temperature", "shortcut", "tuned"])
    f.add_argument(
        "--folds", type=positive_int, default=5, metavar="K", help="cross-fitting folds (5)"
    )
    f.add_argument("--seed", type=int, default=0, help="seed of the folds and inner splits (0)")
    f.add_argument(
        "--top-k",
        type=int,
        default=DEFAULT_TOP_K,
        metavar="K",
        help=f"tokens beside the answer options in each fold's token set ({DEFAULT_TOP_K})",
    )
    f.add_argument(
        "--max-iter",
        type=positive_int,
        default=DEFAULT_MAX_ITER,
        metavar="N",
        help=f"tuned: L-BFGS iterations per depth and fold at most ({DEFAULT_MAX_ITER})",
    )
    f.add_argument("--overwrite", action="store_true", help="replace an existing lens at DIR")
    f.add_argument("--allow-partial", action="store_true", help="use the written examples only")
    add_remote_args(f)
    f.set_defaults(func=run_fit)


def run_fit(args: argparse.Namespace) -> int:
    """Fit and write the lens; 1 with a message on a store or lens error."""
    from analyze.lens.fitted import LensError, fit_lens
    from analyze.lens.scheduler import scheduler_of
    from layercal.format import StoreError

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        with scheduler_of(args):
            lens = fit_lens(
                args.store,
                args.kind,
                args.out,
                folds=args.folds,
                seed=args.seed,
                top_k=args.top_k,
                max_iter=args.max_iter,
                storage_options=args.storage_options,
                allow_partial=args.allow_partial,
                overwrite=args.overwrite,
                progress=say,
            )
    except (LensError, StoreError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    info = lens.info
    print(
        f"lens {lens.path}: {info['kind']} on {info['model']} / {info['dataset']} "
        f"(store hash {info['store_hash']}), {info['folds']['k']} folds, "
        f"{info['n_depth']} depths, fitted in {info['fit_seconds']:.1f} s"
    )
    return 0
