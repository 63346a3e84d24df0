"""``layercal summary``: per-layer accuracy, ECE and confidence of a store, as a table."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from analyze.cli.options import add_remote_args


def add_parser(sub: Any) -> None:
    """Register ``summary`` on an argparse subparsers object."""
    p = sub.add_parser("summary", help="per-layer accuracy and ECE of a store, as a table")
    p.add_argument("store", help="store path or fsspec URL")
    p.add_argument("--bins", type=int, default=10)
    p.add_argument("--allow-partial", action="store_true", help="analyse written examples only")
    p.add_argument(
        "--lens",
        default="logit",
        metavar="logit|DIR",
        help="read every depth through this lens: logit (default) or a folder from `layercal "
        "lens fit` (docs/lenses.md)",
    )
    p.add_argument(
        "--transfer", action="store_true", help="allow a lens fitted on another store of the model"
    )
    add_remote_args(p)
    p.set_defaults(func=run)


def layer_table(ds: Any, bins: int = 10, bound: Any = None) -> tuple[list[dict[str, float]], float]:
    """Per-layer accuracy, ECE and mean confidence from the lens recomputed on ``resid``.

    ``bound``: a fitted lens bound to ``ds`` (:mod:`analyze.lens.fitted`), or None (the logit
    lens). Returns the rows and the max |lens(last layer) - model logits| (must be ~0)."""
    from analyze.calibration import per_layer_metrics
    from analyze.lens import AnswerLens, answer_logits

    lens = AnswerLens.of(ds)
    recorded = ds["lens_logits"].values
    if bound is None:
        z = answer_logits(ds, lens).values  # (n, L, K)
        lens.check(z, recorded)  # the store's dtype sets the tolerance
    else:  # checked at the last depth only, where every lens is the identity
        lensed, scale = bound.lensed(ds)
        z = answer_logits(lensed, lens).values
        z = z if scale is None else z * np.asarray(scale)[..., None]
        lens.check(z[:, -1:], recorded[:, -1:])
    model = np.asarray(ds["model_logits"].values)
    last_diff = float(np.abs(z[:, -1] - model).max())
    label = np.asarray(ds["label"].values).astype(np.int64)
    mask = np.asarray(ds["choice_mask"].values)
    m = per_layer_metrics(np.moveaxis(z, 1, 0), label, mask, n_bins=bins)
    rows = [
        {"layer": int(layer), **{k: float(m[k][i]) for k in ("accuracy", "ece", "mean_confidence")}}
        for i, layer in enumerate(ds["layer"].values)
    ]
    return rows, last_diff


def run(args: argparse.Namespace) -> int:
    from analyze.lens.scheduler import scheduler_of
    from analyze.lens.store import open_store
    from layercal.format import StoreError

    try:
        ds = open_store(
            args.store, storage_options=args.storage_options, allow_partial=args.allow_partial
        )
        bound = None
        if args.lens != "logit":
            from analyze.lens.fitted import load_lens

            bound = load_lens(args.lens).bind(ds, args.transfer)
        with scheduler_of(args):
            rows, last_diff = layer_table(ds, args.bins, bound)
    except (StoreError, ValueError) as e:  # LensError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 1
    ident = ds.attrs["layercal"]["identity"]
    print(
        f"store {args.store}: {ident['model']} on {ident['dataset']}/{ident['split']}, "
        f"{ds.sizes['example']} examples, {ds.sizes['layer']} depths"
        + ("" if bound is None else f"; lens {bound.name} ({bound.kind})")
    )
    print(f"{'layer':>5}  {'accuracy':>8}  {'ECE':>6}  {'conf':>6}")
    for r in rows:
        print(
            f"{r['layer']:>5}  {r['accuracy']:>8.3f}  {r['ece']:>6.3f}  {r['mean_confidence']:>6.3f}"
        )
    print(f"lens at the last layer vs the model's logits: max |diff| = {last_diff:.2e}")
    return 0
