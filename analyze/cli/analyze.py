"""``layercal analyze``: stores -> per-layer tables, landmarks and the report (CPU only)."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analyze.cli.options import add_remote_args, add_resample_args, defaults_of

if TYPE_CHECKING:  # analysis imports dask and xarray: only when a command runs
    from analyze.analysis import VocabExamples

DESCRIPTION = """\
Logit-lens calibration of one or more activation stores, layer by layer.

Output in REPORT_DIR:
  one store:      layers.csv, by_group.csv, landmarks.json, reliability.npz, meta.json
  several stores: one subfolder per store (named after the store, e.g. REPORT_DIR/smollm2-mmlu/)
                  holding those five files, plus top-level layers.csv and by_group.csv with all
                  stores stacked (first column `store` = the subfolder name) and landmarks.json
                  mapping each subfolder name to its landmarks
  always:         report.html, report.md and figures/ (PNG and SVG)
Every table carries the store's provenance hash (column store_hash).

Results are cached in REPORT_DIR/.cache/<key>/ (key: the store's content fingerprint and every
parameter): a rerun with the same parameters is near-instant, a changed one recomputes.

Splits: each subject's examples are divided (seeded) into a "fit" part (--temperature-split of
them) and an "eval" part. Temperature scaling is fitted per layer on "fit" and measured on
"eval" (columns temperature, ece_temperature_scaled, nll_temperature_scaled, and the unscaled
ece_eval, nll_eval on the same examples), whatever --split says; --split chooses the examples
all other metrics use.

Landmarks (landmarks.json): chance = mean over examples of 1/K_i; the rise layer is where
accuracy's lower 95% bound stays above chance to the last layer. The peak-miscalibration layer
is chosen on one half of the examples (per subject, seeded: "selection") and the correction
phase (peak, last] is measured on the other ("test"), so choosing the peak does not bias its
test; landmarks.json records both halves.

Confidence is the softmax over the K answer-option tokens only; option_mass is the share of the
full-vocabulary probability those tokens hold (below 0.01 the lens reads tokens the model does
not predict). MCE counts bins of at least --mce-min-count examples (default 10).

Lenses (--lens, docs/lenses.md): every number above is read through the logit lens (the stored
final norm and unembedding at every depth) unless --lens DIR names a lens fitted by `layercal
lens fit`: a translator per depth before them, each example read through the translator fitted
without it. Under --lens DIR the tables gain a `lens` column (layers.csv, first) and ΔECE to the
last layer per layer (delta_ece_to_last, _lo, _hi), landmarks.json gains `lens` and
`plateau_to_last` (ΔECE from the plateau to the last layer with its interval, agreement with the
final answer, confidence, entropy and KL at both ends), option_mass and vocab_entropy come from
the --vocab-examples sample (default 32) read through the lens. Several --lens (e.g. --lens logit
--lens lenses/tuned) analyse each store under each lens: one subfolder per lens (per store and
lens with several stores), stacked tables with a `lens` column, and a report that puts the
lenses side by side. --lens logit alone is the default and writes exactly what no --lens does.

Full-vocabulary quantities cost ~1 ms per example and layer on a CPU, so the full-vocabulary
lens is recomputed for a seeded sample of --vocab-examples examples, which cross-checks the
log-sum-exp (and entropy) recorded at extraction. option_mass and vocab_entropy use the
recomputed values for the sampled examples and the recorded ones for every other example
(stores written before layercal recorded lens_entropy: vocab_entropy averages the sample only).
Default: 8 examples, or 32 for those older stores.
"""


def parse_layers(text: str) -> list[int]:
    """``"0,10,20-30"`` -> [0, 10, 20, 21, ..., 30]."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise argparse.ArgumentTypeError(f"layer range {part!r} runs backwards")
            out.extend(range(lo, hi + 1))
        elif part.isdigit():
            out.append(int(part))
        else:
            raise argparse.ArgumentTypeError(
                f"cannot read layer {part!r}: use numbers and ranges, e.g. 0,10,20-30"
            )
    return sorted(set(out))


def _vocab_examples(text: str) -> str:
    if text not in ("all", "auto") and not text.isdigit():
        raise argparse.ArgumentTypeError(
            f"--vocab-examples takes a number, 'all' or 'auto', got {text!r}"
        )
    return text


def add_parser(sub: Any) -> None:
    """Register ``analyze`` on an argparse subparsers object."""
    from analyze.analysis import analyze_store

    p = sub.add_parser(
        "analyze",
        help="per-layer calibration tables, landmarks and report.html for one or more stores",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("stores", nargs="+", metavar="STORE", help="store path or fsspec URL")
    p.add_argument(
        "--out", required=True, type=Path, metavar="REPORT_DIR", help="tables, report and cache"
    )
    _add_analysis_args(p, defaults_of(analyze_store))  # the defaults written once, there
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="analyse only the written examples of an unfinished store",
    )
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    _lens_args(p)
    p.add_argument(
        "--group-intervals",
        action="store_true",
        help="also bootstrap every group's smooth ECE (by_group.csv smece_lo/smece_hi, else "
        "empty): a bandwidth search per resample, group and layer, about a minute for 57 "
        "subjects x 31 layers x 1000 resamples on 2 cores",
    )
    add_remote_args(p)
    p.set_defaults(func=run)


def _add_analysis_args(p: argparse.ArgumentParser, fn: dict[str, Any]) -> None:
    """The options of ``analyze_store`` itself; ``fn``: its keyword defaults."""
    p.add_argument(
        "--bins",
        type=int,
        default=fn["bins"],
        metavar="M",
        help="equal-width ECE/MCE bins (default %(default)s)",
    )
    p.add_argument(
        "--by",
        action="append",
        choices=["subject", "category"],
        help="rows of by_group.csv (repeatable; default: both)",
    )
    p.add_argument(
        "--layers",
        type=parse_layers,
        metavar="LIST",
        help="depths to analyse, e.g. 0,10,20-30 (default all; the last is always added)",
    )
    p.add_argument(
        "--split",
        choices=["all", "fit", "eval"],
        default=fn["split"],
        help="examples the metrics use (default %(default)s; see Splits above)",
    )
    p.add_argument(
        "--temperature-split",
        type=float,
        default=fn["temperature_split"],
        metavar="F",
        help="fraction of each subject in the fit part (default %(default)s)",
    )
    add_resample_args(p)
    p.add_argument(
        "--vocab-examples",
        type=_vocab_examples,
        default=fn["vocab_examples"],
        metavar="N|all|auto",
        help="examples given the full-vocabulary lens: a number, 'all', or 'auto' (default: 8 "
        "when the store records lens_entropy, else 32)",
    )


def _lens_args(p: argparse.ArgumentParser) -> None:
    """--lens and --transfer (docs/lenses.md)."""
    p.add_argument(
        "--lens",
        action="append",
        metavar="logit|DIR",
        help="read every depth through this lens: logit (default) or a folder from `layercal "
        "lens fit` (repeatable: lenses side by side; see Lenses above)",
    )
    p.add_argument(
        "--transfer",
        action="store_true",
        help="allow a lens fitted on another store of the same model (another dataset): every "
        "example is then read through the mean of its fold translators",
    )


def store_names(stores: list[str]) -> list[str]:
    """Subfolder names: the store's file name without .zarr/.zip, made unique."""
    names: list[str] = []
    for s in stores:
        base = re.sub(r"\.(zarr|zip)$", "", s.rstrip("/").rsplit("/", 1)[-1]) or "store"
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", base)
        name, i = base, 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        names.append(name)
    return names


def write_tables(
    results: list[Any], out: Path, names: list[str], stores: list[str] | None = None
) -> None:
    """The tables of each result in ``out`` (one store) or in subfolders ``names`` plus stacked
    tables (first column ``store``: ``stores``, default the subfolder names)."""
    import polars as pl

    if len(results) == 1:
        results[0].save(out)
        return
    layers, groups, marks = [], [], {}
    for res, name, label in zip(results, names, stores or names):
        res.save(out / name)
        h = str(res.meta.get("store_hash"))
        store = pl.lit(label)
        layers.append(
            res.layers.select(store.alias("store"), pl.all()).with_columns(store_hash=pl.lit(h))
        )
        groups.append(
            res.by_group.select(store.alias("store"), pl.all()).with_columns(store_hash=pl.lit(h))
        )
        marks[name] = {"store": res.meta.get("store"), "store_hash": h, **res.landmarks}
    pl.concat(layers, how="diagonal_relaxed").write_csv(out / "layers.csv")
    pl.concat(groups, how="diagonal_relaxed").write_csv(out / "by_group.csv")
    (out / "landmarks.json").write_text(json.dumps({"stores": marks}, indent=2))


def _describe(res: Any, seconds: float) -> list[str]:
    m, lm = res.meta, res.landmarks
    how = "from cache" if m.get("cache_hit") else f"in {seconds:.1f} s"
    lines = [
        f"{m.get('store')}: {m.get('label')}, {m.get('n_examples')} examples, "
        f"{m.get('n_layers')} layers ({how}); store hash {m.get('store_hash')}"
    ]
    cp = lm.get("correction_phase")
    marks = ", ".join(
        f"{k.replace('_layer', '').replace('_', ' ')} {lm.get(k)}"
        for k in ("rise_layer", "plateau_layer", "peak_miscalibration_layer")
    )
    lines.append(f"  landmarks: {marks}")
    if lm.get("lens"):
        from analyze.lens.fitted.compare import describe

        lines.append(f"  {describe(lm)}")
    if cp:
        sig = "significant" if cp["significant"] else "not significant"
        lines.append(
            f"  correction phase ({cp['start']}, {cp['end']}]: ΔECE {cp['delta_ece']:+.3f} "
            f"[{cp['delta_ece_lo']:+.3f}, {cp['delta_ece_hi']:+.3f}] ({sig}), Δconfidence "
            f"{cp['delta_confidence']:+.3f}; peak chosen on {cp.get('n_selection')} examples, "
            f"tested on the other {cp.get('n_test')}"
        )
    lines += [f"  note: {n}" for n in lm.get("notes", [])]
    return lines


def run(args: argparse.Namespace) -> int:
    """Analyse every store, write the tables, then the report; 1 on a store error."""
    from analyze.lens.scheduler import scheduler_of

    out: Path = args.out
    text = args.vocab_examples
    vocab: VocabExamples = "auto" if text == "auto" else None if text == "all" else int(text)
    lenses = _lenses(args.lens)
    try:
        with scheduler_of(args):
            results = _analyze_all(args, vocab, lenses)
    except (_Failed, ValueError) as e:  # a store, a lens, or a scheduler that did not start
        print(f"error: {e}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    stores = [s for s in store_names(list(args.stores)) for _ in lenses]
    names = stores
    if len(lenses) > 1:  # one subfolder per lens (per store and lens with several stores)
        tags = store_names([str(x) for x in lenses])
        names = [
            t if len(args.stores) == 1 else f"{s}/{t}"
            for s, t in zip(stores, tags * len(args.stores))
        ]
        for res, t in zip(results, tags * len(args.stores)):
            res.meta["label"] = f"{res.label} · lens {t}"
    write_tables(results, out, names, stores)
    from analyze.report.write import write_report  # figures: matplotlib, only now

    report = write_report(results, out)
    print(f"report: {report}")
    return 0


class _Failed(Exception):
    """A store could not be analysed (the message names it)."""


def _lenses(given: list[str] | None) -> list[str | None]:
    """The lens of each analysis: None alone (the default, and --lens logit alone: the output
    without any --lens), else each name or folder given, in order."""
    if not given or given == ["logit"]:
        return [None]
    return list(given)


def _analyze_all(
    args: argparse.Namespace, vocab: VocabExamples, lenses: list[str | None]
) -> list[Any]:
    """``analyze_store`` on each store under each lens in turn, printing a summary of each."""
    from analyze.analysis import analyze_store
    from analyze.lens.fitted import LensError, load_lens
    from layercal.format import StoreError

    try:  # every lens folder is read before any store
        loaded = [x if x in (None, "logit") else load_lens(x) for x in lenses]
    except LensError as e:
        raise _Failed(str(e)) from e
    results = []
    for store, lens in ((s, x) for s in args.stores for x in loaded):
        t0 = time.perf_counter()
        try:
            res = analyze_store(
                store,
                bins=args.bins,
                mce_min_count=args.mce_min_count,
                n_boot=args.n_boot,
                seed=args.seed,
                layers=args.layers,
                split=args.split,
                group_by=tuple(args.by or ("subject", "category")),
                temperature_split=args.temperature_split,
                vocab_examples=vocab,
                storage_options=args.storage_options,
                allow_partial=args.allow_partial,
                cache_dir=None if args.no_cache else args.out / ".cache",
                lens=lens,
                transfer=args.transfer,
                group_intervals=args.group_intervals,
            )
        except (StoreError, ValueError) as e:  # LensError is a ValueError
            raise _Failed(f"{store}: {e}") from e
        for w in res.meta.get("warnings", []):
            print(f"warning: {store}: {w}", file=sys.stderr)
        print("\n".join(_describe(res, time.perf_counter() - t0)), flush=True)
        results.append(res)
    return results
