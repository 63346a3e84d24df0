"""``layercal nullspace``, ``layercal direction fit`` and ``layercal steer``.

Each writes CSV tables, figures (``figures/*.png|svg``), ``meta.json`` and a Markdown report
section ``section.md`` into its output folder. Nothing here imports torch or the extraction
stage: ``steer --online`` gets its model-backed sweeper from an :class:`OnlineSweeper` that
the ``layercal`` command passes in (``extract.model_sweeper``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Protocol

from analyze.cli.options import add_remote_args, defaults_of
from layercal.cliargs import comma_floats, comma_ints

DOC = "docs/steering.md"
# why these commands take no --lens (analyze and summary do; docs/lenses.md)
NO_LENS = {
    "nullspace": "No --lens: the subspaces are the readout's (W_U and the final norm), ablated in "
    "the stored residual; a fitted lens's translator before the readout mixes them, so the null "
    "space at an earlier depth has no meaning under it (docs/lenses.md).",
    "direction fit": "No --lens: the direction comes from raw residual deltas; only the default "
    "window (the correction phase) depends on the lens: pass --window START:END with the phase "
    "`layercal analyze --lens DIR` reports (docs/lenses.md).",
    "steer": "No --lens: steering is read at the last depth, where every lens is the identity "
    "(docs/lenses.md).",
}


class OnlineSweeper(Protocol):
    """Builds the model-backed sweeper of ``steer --online`` and its JSON record: the
    extraction stage's ``extract.model_sweeper``, which the ``layercal`` command hands in."""

    def __call__(
        self,
        store: str,
        model: str,
        *,
        layer: int,
        dtype: str,
        device: str,
        positions: str,
        batch_size: int,
        kv: bool,
    ) -> tuple[Any, dict[str, Any]]: ...


def _window(text: str) -> tuple[int, int]:
    try:
        a, b = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--window {text!r}: expected START:END, e.g. 25:30"
        ) from None
    return a, b


def _labelled(text: str) -> tuple[str, str]:
    """LABEL=STORE, or STORE (labelled by its file name)."""
    label, sep, path = text.partition("=")
    return (label, path) if sep else (Path(text.rstrip("/")).name, text)


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="store path or fsspec URL")
    p.add_argument("--allow-partial", action="store_true", help="use the written examples only")
    p.add_argument("--seed", type=int, default=0, help="seed of splits, resamples, controls")
    add_remote_args(p)  # --storage-options (also for --compare/--transfer stores), --scheduler


def add_nullspace(sub: Any) -> None:
    """Register ``nullspace`` on the ``layercal`` subparsers ``sub``."""
    from analyze.interventions.nullspace import run_nullspace as run

    fn = defaults_of(run)
    p = sub.add_parser(
        "nullspace",
        help="null-space ablations of stored residuals (CPU)",
        epilog=NO_LENS["nullspace"],
    )
    _store_args(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--layers", type=comma_ints, help="depths to ablate, comma-separated (default all)"
    )
    p.add_argument("--fractions", type=comma_floats, default=None, help="k / d values to sweep")
    p.add_argument(
        "--beta",
        type=float,
        action="append",
        help="scale of the subspace (0 = project out; repeatable)",
    )
    p.add_argument(
        "--random", type=int, default=fn["n_random"], help="random subspaces per k (seeds)"
    )
    p.add_argument("--bins", type=int, default=fn["n_bins"])
    p.add_argument("--n-boot", type=int, default=fn["n_boot"])
    p.add_argument(
        "--vocab-examples",
        type=int,
        default=fn["vocab_examples"],
        help="examples for the option mass",
    )
    p.add_argument("--svd-method", choices=["auto", "scipy", "dask"], default="auto")
    p.add_argument("--cache-dir", help="SVD cache folder (default: next to the store)")
    p.set_defaults(func=run_nullspace)


def add_direction(sub: Any) -> None:
    """Register ``direction fit`` on the ``layercal`` subparsers ``sub``."""
    from analyze.interventions.direction import fit_direction
    from analyze.interventions.estimators import ESTIMATORS

    fn = defaults_of(fit_direction)
    d = sub.add_parser("direction", help="calibration direction from layer deltas (CPU)")
    dsub = d.add_subparsers(dest="direction_command", required=True)
    p = dsub.add_parser(
        "fit",
        help="fit a direction on a store; writes an artifact folder",
        epilog=NO_LENS["direction fit"],
    )
    _store_args(p)
    p.add_argument("-o", "--out", required=True, help="artifact folder")
    p.add_argument("--estimator", choices=ESTIMATORS, default=fn["estimator"])
    p.add_argument(
        "--window", type=_window, help="START:END depths (default: the correction phase)"
    )
    p.add_argument(
        "--last-m",
        type=int,
        default=fn["last_m"],
        help="deltas used when there is no correction phase",
    )
    p.add_argument(
        "--fit-fraction",
        type=float,
        default=fn["fit_fraction"],
        help="share of each subject fit on",
    )
    p.add_argument("--category", help="fit on one category only (e.g. humanities)")
    p.add_argument("--subjects", type=lambda t: t.split(","), help="fit on these subjects only")
    p.add_argument("--overconfident-quantile", type=float, default=fn["overconfident_quantile"])
    p.add_argument(
        "--n-boot", type=int, default=fn["n_boot"], help="bootstrap refits for stability"
    )
    p.add_argument(
        "--compare",
        type=_labelled,
        action="append",
        default=[],
        help="[LABEL=]STORE of the same model to refit on and compare (repeatable)",
    )
    p.add_argument("--no-svd", action="store_true", help="skip the null-space share")
    p.set_defaults(func=run_direction_fit)


def add_steer(sub: Any, *, online_sweeper: OnlineSweeper | None = None) -> None:
    """Register ``steer`` on the ``layercal`` subparsers ``sub``; ``online_sweeper`` serves
    ``steer --online`` (None: refused, see :func:`run_steer`)."""
    from analyze.interventions.steer import run_steering
    from analyze.interventions.steer_select import SELECT

    fn = defaults_of(run_steering)
    p = sub.add_parser(
        "steer", help="steer with a direction; controls, transfer", epilog=NO_LENS["steer"]
    )
    _store_args(p)
    p.add_argument("--direction", required=True, help="artifact folder from `direction fit`")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--alphas",
        type=comma_floats,
        help="α grid, comma-separated; write --alphas=-1,0.5 when it starts with a minus (0 is always added)",
    )
    p.add_argument(
        "--layer",
        type=int,
        help="depth to steer (default the last; others need --online, or --truncated)",
    )
    p.add_argument(
        "--truncated",
        action="store_true",
        help="read the lens at --layer itself (the model cut there): offline and exact from "
        "the stored residuals at that depth; temperature and null-space controls there too",
    )
    p.add_argument("--dev-fraction", type=float, default=fn["dev_fraction"])
    p.add_argument(
        "--select",
        choices=SELECT,
        default=fn["select"],
        help="the dev objective every method's one scalar (α, T, β) minimises (default "
        "%(default)s)",
    )
    p.add_argument(
        "--accuracy-margin",
        type=float,
        default=fn["accuracy_margin"],
        help="a value keeps accuracy when the lower bound of its paired Δaccuracy interval on "
        "dev (against α = 0 / β = 1) is above -MARGIN (default %(default)s)",
    )
    p.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=fn["max_accuracy_drop"],
        help="deprecated: the old fixed rule (point Δaccuracy on dev at least -DROP) instead of "
        "the interval rule of --accuracy-margin; with --select ece it is the old behaviour",
    )
    p.add_argument(
        "--random",
        type=int,
        default=fn["n_random"],
        help="random directions with the direction's null-space share (default %(default)s)",
    )
    p.add_argument("--betas", type=comma_floats, help="β grid of the null-space control")
    p.add_argument("--k", type=int, help="null-space size (default round(0.01 d))")
    p.add_argument(
        "--no-nullspace",
        action="store_true",
        help="skip the null-space control (random directions still match its share)",
    )
    p.add_argument("--bins", type=int, default=fn["n_bins"])
    p.add_argument("--n-boot", type=int, default=fn["n_boot"])
    p.add_argument(
        "--transfer",
        type=_labelled,
        action="append",
        default=[],
        help="[LABEL=]STORE of the same model to apply the choices to (repeatable)",
    )
    _add_online_args(p)
    p.set_defaults(func=run_steer, online_sweeper=online_sweeper)


def _add_online_args(p: argparse.ArgumentParser) -> None:
    """``steer --online``'s options (the model's sweeper, ``extract.model_sweeper``, reads them)."""
    g = p.add_argument_group("online (runs the model; torch)")
    g.add_argument("--online", action="store_true", help="steer inside the model with a hook")
    g.add_argument("--model", help="the store's model (name, folder or .gguf)")
    g.add_argument("--dtype", default="float32")
    g.add_argument("--device", default="auto")
    g.add_argument("--positions", choices=["last", "all"], default="last")
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--no-kv", action="store_true", help="a full forward per α (no KV reuse)")
    g.add_argument("--limit", type=int, help="at most N dev and N test examples (online on CPU)")


def _open(args: argparse.Namespace, path: str | None = None) -> Any:
    from analyze.lens.store import open_store

    return open_store(
        path or args.store, storage_options=args.storage_options, allow_partial=args.allow_partial
    )


def _fail(e: Exception) -> int:
    print(f"error: {e}", file=sys.stderr)
    return 1


def _write(out: Path, tables: dict[str, Any], meta: dict[str, Any] | None) -> None:
    """``<name>.csv`` per polars table, and ``meta.json`` when given."""
    out.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        df.write_csv(out / f"{name}.csv")
    if meta is not None:
        (out / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")


def _section(out: Path, blocks: list[Any]) -> None:
    """``section.md``: the command's report section (``layercal analyze`` includes it)."""
    from analyze.report.render import to_markdown

    (out / "section.md").write_text(to_markdown(blocks, None, out, escape=False))


def run_nullspace(args: argparse.Namespace) -> int:
    from analyze.interventions.nullspace import DEFAULT_FRACTIONS
    from analyze.interventions.nullspace import run_nullspace as run
    from analyze.interventions.svd import unembed_svd
    from analyze.lens.scheduler import scheduler_of
    from analyze.report.intervention_figures import nullspace_figures
    from analyze.report.intervention_sections import nullspace_blocks
    from layercal.format import StoreError

    try:
        with scheduler_of(args):
            ds = _open(args)
            svd = unembed_svd(ds, method=args.svd_method, cache_dir=args.cache_dir)
            res = run(
                ds,
                svd,
                layers=args.layers,
                fractions=args.fractions or DEFAULT_FRACTIONS,
                betas=args.beta or [0.0],
                n_random=args.random,
                seed=args.seed,
                n_bins=args.bins,
                n_boot=args.n_boot,
                vocab_examples=args.vocab_examples,
            )
    except (StoreError, ValueError) as e:
        return _fail(e)
    out = Path(args.out)
    res.meta["store"] = args.store
    _write(out, {"ablation": res.ablation, "share": res.share}, res.meta)
    figs = nullspace_figures(res.ablation, res.share, res.meta, out / "figures")
    _section(out, nullspace_blocks(res.ablation, res.share, res.meta, figs))
    print(f"wrote {out}/ablation.csv, share.csv, figures/, section.md (SVD: {svd.path})")
    return 0


def run_direction_fit(args: argparse.Namespace) -> int:
    from analyze.interventions.direction import category_cosines, compare_store, fit_direction
    from analyze.interventions.svd import default_k, unembed_svd
    from analyze.lens.scheduler import scheduler_of
    from analyze.report.intervention_figures import direction_figures
    from analyze.report.intervention_sections import direction_blocks
    from layercal.format import StoreError

    try:
        with scheduler_of(args):
            ds = _open(args)
            d = fit_direction(
                ds,
                estimator=args.estimator,
                window=args.window,
                last_m=args.last_m,
                fit_fraction=args.fit_fraction,
                seed=args.seed,
                category=args.category,
                subjects=args.subjects,
                overconfident_quantile=args.overconfident_quantile,
                n_boot=args.n_boot,
            )
            diag = d.info["diagnostics"]
            if not args.no_svd:
                k = default_k(d.hidden)
                share = float(unembed_svd(ds).null_share(d.vector, k))
                diag["null_space_share"] = {
                    "k": k,
                    "share": share,
                    "random_expected": (k / d.hidden) ** 0.5,
                }
            diag["category_cosines"] = category_cosines(ds, d)
            diag["compare"] = [
                compare_store(d, _open(args, path), label) for label, path in args.compare
            ]
    except (StoreError, ValueError) as e:
        return _fail(e)
    out = d.save(args.out)
    _write(out, direction_tables(diag), None)
    figs = direction_figures(d.info, out / "figures")
    _section(out, direction_blocks(d.info, figs))
    window, source = d.info["window"], d.info["window_source"]
    print(f"wrote direction ({args.estimator}, window {window}, {source}) to {out}")
    for note in d.info["window_notes"]:
        print(f"  note: {note}")
    return 0


def direction_tables(diag: dict[str, Any]) -> dict[str, Any]:
    """``explained_variance.csv`` (component; share: Δ centred per layer, what pca fits;
    share_pooled: centred on the pooled mean; share_control: per layer, the control window) and
    ``category_cosines.csv`` (with cosine_to_control) when there are categories."""
    import polars as pl

    ev, cc = diag["explained_variance"], diag["category_cosines"]
    ctrl = diag.get("control", {}).get("explained_variance") or []

    def col(xs: list[float]) -> list[float | None]:
        return [xs[i] if i < len(xs) else None for i in range(len(ev))]

    tables = {
        "explained_variance": pl.DataFrame(
            {
                "component": range(1, len(ev) + 1),
                "share": ev,
                "share_pooled": col(diag.get("explained_variance_pooled") or []),
                "share_control": col(ctrl),
            },
            schema_overrides={"share_pooled": pl.Float64, "share_control": pl.Float64},
        )
    }
    if cc["categories"]:
        keys = ("categories", "n_fit", "cosine_to_direction")
        to_ctrl = cc.get("cosine_to_control") or [None] * len(cc["categories"])
        tables["category_cosines"] = pl.DataFrame(
            {**{k: cc[k] for k in keys}, "cosine_to_control": to_ctrl},
            schema_overrides={"cosine_to_control": pl.Float64},
        )
    return tables


def run_steer(args: argparse.Namespace) -> int:
    from analyze.interventions.artifact import Direction
    from analyze.interventions.steer import DEFAULT_ALPHAS, DEFAULT_BETAS, run_steering
    from analyze.interventions.svd import unembed_svd
    from analyze.lens.scheduler import scheduler_of
    from analyze.report.intervention_figures import steer_figures
    from analyze.report.steer_section import steer_blocks
    from layercal.format import StoreError

    if args.truncated and args.online:
        return _fail(
            ValueError(
                "--truncated reads the lens at the steered depth from the stored residuals "
                "(offline, exact): drop --online, or drop --truncated to read the last depth"
            )
        )
    if args.max_accuracy_drop is not None:
        print(
            "warning: --max-accuracy-drop is deprecated: it applies a fixed tolerance to the "
            "point estimate of Δaccuracy on dev, which at small n is below one answer. Use "
            "--accuracy-margin (a value keeps accuracy when its paired interval's lower bound "
            "is above -MARGIN); this run uses the fixed rule.",
            file=sys.stderr,
        )
    try:
        with scheduler_of(args):
            ds = _open(args)
            direction = Direction.load(args.direction)
            sweeper, online = None, None
            if args.online:
                sweeper, online = _online_sweeper(args, ds)
            res = run_steering(
                ds,
                direction,
                alphas=args.alphas or DEFAULT_ALPHAS,
                layer=args.layer,
                dev_fraction=args.dev_fraction,
                seed=args.seed,
                truncated=args.truncated,
                n_random=args.random,
                betas=args.betas or DEFAULT_BETAS,
                k=args.k,
                svd=unembed_svd(ds) if args.random or not args.no_nullspace else None,
                nullspace=not args.no_nullspace,
                select=args.select,
                accuracy_margin=args.accuracy_margin,
                max_accuracy_drop=args.max_accuracy_drop,
                n_bins=args.bins,
                n_boot=args.n_boot,
                sweeper=sweeper,
                transfer=[(label, _open(args, p)) for label, p in args.transfer],
                limit=args.limit,
                model_dtype=None if online is None else online.get("dtype"),
            )
    except (StoreError, ValueError, RuntimeError) as e:
        return _fail(e)
    out = Path(args.out)
    res.meta.update(store=args.store, direction_folder=args.direction, online=online)
    tables = {
        "steering": res.table,
        "sweep": res.sweep,
        "reliability": res.reliability,
        "transfer": res.transfer,
        "contrasts": res.contrasts,
    }
    _write(out, tables, res.meta)
    figs = steer_figures(res.sweep, res.reliability, res.transfer, out / "figures")
    _section(out, steer_blocks(res.table, res.transfer, res.meta, figs, res.contrasts))
    chosen = res.meta["chosen"]["direction"]
    print(
        f"wrote {out}/steering.csv, sweep.csv, reliability.csv, transfer.csv, contrasts.csv "
        f"(α* = {chosen:g}, chosen by {args.select} on dev)"
    )
    return 0


def _online_sweeper(args: argparse.Namespace, ds: Any) -> tuple[Any, dict[str, Any]]:
    """The model-backed sweeper from the factory the ``layercal`` command registered, for the
    store ``ds`` was opened from and the depth ``--layer`` (default the last)."""
    if not args.model:
        raise ValueError("--online needs --model (the model the store was extracted with)")
    factory: OnlineSweeper | None = getattr(args, "online_sweeper", None)
    if factory is None:
        raise ValueError(
            "--online runs the model, which this entry point does not load: run "
            "`layercal steer ... --online` (the layercal command)"
        )
    return factory(
        str(ds.encoding.get("source") or args.store),
        args.model,
        layer=int(ds.sizes["layer"]) - 1 if args.layer is None else args.layer,
        dtype=args.dtype,
        device=args.device,
        positions=args.positions,
        batch_size=args.batch_size,
        kv=not args.no_kv,
    )
