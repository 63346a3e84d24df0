"""Run the whole experiment on one model's MMLU and TruthfulQA stores; collect the numbers.

    python scripts/findings.py --mmlu stores/qwen-mmlu-sample.zarr \
        --truthfulqa stores/qwen-truthfulqa.zarr --label qwen --out reports/findings-qwen \
        [--n-boot 1000] [--main-estimator pca] \
        [--model qwen2.5-coder-1.5b --online-layers auto --online-limit 100] \
        [--fewshot stores/qwen-mmlu-sample-5shot.zarr]

Steps, each with the public command so the outputs are the documented ones:

1. ``layercal analyze`` on both stores: per-layer curves, landmarks, correction phase (if the
   analysis command is installed in this checkout);
2. ``layercal nullspace`` on the MMLU store: SVD of W̃, null-space share per layer, ablations;
3. ``layercal direction fit`` with every estimator on MMLU-humanities (window: the correction
   phase, else the last 5 layers), compared with a refit on TruthfulQA;
4. ``layercal steer`` with each direction: α chosen on humanities dev, reported on humanities
   test, transferred unchanged to the other MMLU categories and to TruthfulQA; beside it
   temperature scaling, random directions and null-space scaling (all in the steer table);
5. with ``--model``: ``layercal steer --online`` with the main direction at depths inside the
   correction phase found in step 1 (``--online-layers auto``: its first depth, the peak, and
   its middle), the model running the rest of the forward pass;
6. with ``--fewshot STORE`` (a K-shot store of the same questions, finished or not): the
   analysis of its written examples beside the zero-shot store's analysis of the same
   examples (``fewshot/``), so that the rise and the correction phase are compared on one set;
7. issue 17's steering tests (scripts/findings_steer.py; ``steer-LABEL-*.csv`` and
   ``steer-LABEL.json``): ``truthfulqa`` (the MMLU direction on TruthfulQA with α on its dev,
   and an in-domain TruthfulQA direction), ``truncated`` (``--truncated-layers``: each store
   steered with the other's direction, the lens read at the steered depth) and, with
   ``--overconfident STORE``, ``overconfident`` (analysis, fit, steering, and with ``--model``
   the online check at the last depth and inside the correction phase).

One command each, e.g. ``--only truthfulqa``, ``--only truncated --truncated-layers 24,25,26,27``,
``--only overconfident --overconfident STORE --model qwen2.5-coder-1.5b``.

Writes ``findings.json`` (every number docs/findings.md quotes) and ``findings.md`` (a draft:
the numbers in sentences, then every command's report section) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyze.compare import LANDMARK_KEYS, StoreMismatch, compare_fewshot  # noqa: E402
from analyze.interventions import ESTIMATORS  # noqa: E402
from analyze.report.numbers import num, with_ci  # noqa: E402
from layercal.cli import main as layercal  # noqa: E402  (steer --online needs the model stage)


def step(name: str, argv: list[str], log: dict[str, Any]) -> bool:
    """Run one layercal command in-process; record its time and exit code."""
    print(f"\n$ layercal {' '.join(argv)}", flush=True)
    t0 = time.perf_counter()
    try:
        rc = layercal(argv)
    except SystemExit as e:  # argparse: an unknown command in this checkout
        rc = int(e.code or 0) or 2
    log[name] = {"argv": argv, "rc": rc, "seconds": round(time.perf_counter() - t0, 1)}
    if rc != 0:
        print(f"  -> {name} failed (exit {rc}); continuing", flush=True)
    return rc == 0


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def layer_summary(folder: Path) -> dict[str, Any]:
    """Per store: last-layer accuracy/ECE, ECE peak, landmarks (from ``layercal analyze``)."""
    out: dict[str, Any] = {}
    layers = folder / "layers.csv"
    marks = _read_json(folder / "landmarks.json") or {}
    if not layers.is_file():
        return out
    df = pl.read_csv(layers)
    stores = marks.get("stores", {"store": marks})
    for name, lm in stores.items():
        d = df.filter(pl.col("store") == name) if "store" in df.columns else df
        last = d.sort("layer").tail(1).row(0, named=True)
        peak = d.sort("ece", descending=True).head(1).row(0, named=True)
        out[name] = {
            "n": last.get("n"),
            "last_layer": last["layer"],
            "accuracy_last": last["accuracy"],
            "ece_last": last["ece"],
            "ece_last_ci": [last.get("ece_lo"), last.get("ece_hi")],
            "max_ece_layer": peak["layer"],
            "max_ece": peak["ece"],
            "landmarks": {k: lm.get(k) for k in LANDMARK_KEYS},
            "notes": lm.get("notes", []),
        }
    return out


def nullspace_summary(folder: Path) -> dict[str, Any]:
    meta = _read_json(folder / "meta.json")
    if meta is None:
        return {}
    k0, last = meta["default_k"], max(meta["layers"])
    share = pl.read_csv(folder / "share.csv").filter(pl.col("layer") == last)
    abl = pl.read_csv(folder / "ablation.csv").filter(
        (pl.col("layer") == last) & (pl.col("k") == k0) & (pl.col("beta") == meta["betas"][0])
    )
    cols = [
        "condition",
        "d_ece",
        "d_ece_lo",
        "d_ece_hi",
        "d_accuracy",
        "d_entropy",
        "removed",
        "logit_change",
        "logit_gain",
        "norm_ratio",
        "option_mass_delta",
    ]
    return {
        "default_k": k0,
        "smallest_singular_values": meta["singular_values_smallest"][:k0],
        "share_last_layer": {r["kind"]: r["share_mean"] for r in share.iter_rows(named=True)},
        "random_expected": share["random_expected"][0],
        "ablation_last_layer": abl.select([c for c in cols if c in abl.columns]).to_dicts(),
    }


def direction_summary(folder: Path) -> dict[str, Any]:
    info = _read_json(folder / "direction.json")
    if info is None:
        return {}
    keys = ("estimator", "window", "window_source", "window_notes", "split", "diagnostics")
    return {k: info.get(k) for k in keys}


def steer_summary(folder: Path) -> dict[str, Any]:
    meta = _read_json(folder / "meta.json")
    if meta is None:
        return {}
    tab = pl.read_csv(folder / "steering.csv")
    tr = pl.read_csv(folder / "transfer.csv") if (folder / "transfer.csv").stat().st_size else None
    return {
        "chosen": meta["chosen"],
        "scale": meta["scale"],
        "splits": meta["splits"],
        "test": tab.to_dicts(),
        "transfer": [] if tr is None or not tr.height else tr.to_dicts(),
    }


def online_layers(spec: str, layers: dict[str, Any]) -> list[int]:
    """Depths for ``steer --online``: ``auto`` = the first depth and the middle of the MMLU
    store's correction phase (none: no online run), else a comma-separated list."""
    if spec != "auto":
        return [int(x) for x in spec.split(",") if x.strip()]
    mmlu = next(iter(layers.values()), {})  # the MMLU store comes first in the analysis
    cp = (mmlu.get("landmarks") or {}).get("correction_phase")
    if not cp:
        return []
    start, end = int(cp["start"]), int(cp["end"])
    return sorted({start, (start + end) // 2} - {end})


def online_summary(folder: Path) -> dict[str, Any]:
    out = steer_summary(folder)
    meta = _read_json(folder / "meta.json") or {}
    if out:
        out["baseline"] = meta.get("baseline")
        out["layer"] = meta.get("layer")
    return out


def fewshot_compare(zero: str, fewshot: str, out: Path, n_boot: int) -> dict[str, Any]:
    """The K-shot store's written examples and the same examples of the zero-shot store,
    analysed alike (:func:`analyze.compare.compare_fewshot`); both saved under ``out`` with a
    two-store report and ``summary.json``."""
    try:
        comparison = compare_fewshot(zero, fewshot, n_boot=n_boot)
    except StoreMismatch as e:
        raise SystemExit(f"--fewshot: {e}") from None
    comparison.save(out)
    return comparison.summary


def draft(found: dict[str, Any], out: Path, main: str) -> str:
    """findings.md: the headline numbers as sentences, then the command sections."""
    lines = ["# Findings (draft generated by scripts/findings.py)", ""]
    for name, s in found.get("layers", {}).items():
        cp = (s["landmarks"] or {}).get("correction_phase")
        cp_text = (
            "no correction phase"
            if not cp
            else (
                f"correction phase ({cp['start']}, {cp['end']}]: ΔECE "
                f"{with_ci(cp, 'delta_ece', signed=True)}"
            )
        )
        lines.append(
            f"- {name}: last-layer accuracy {num(s['accuracy_last'], 3)}, ECE "
            f"{num(s['ece_last'], 3)}; largest ECE {num(s['max_ece'], 3)} at layer "
            f"{s['max_ece_layer']}; {cp_text}."
        )
    ns = found.get("nullspace") or {}
    if ns:
        sh = ns["share_last_layer"]
        lines.append(
            f"- Null space (k = {ns['default_k']}): {num(sh.get('null'), 3)} of "
            f"the last layer's residual norm (top-k {num(sh.get('top'), 3)}, "
            f"random {num(ns['random_expected'], 3)})."
        )
    st = (found.get("steer") or {}).get(main) or {}
    rows = {r["method"]: r for r in st.get("test", [])}
    if "direction" in rows:
        r, t = rows["direction"], rows.get("temperature", {})
        lines.append(
            f"- Steering ({main}, α = {num(st['chosen']['direction'], spec='g')}) on humanities "
            f"test: ΔECE {with_ci(r, 'd_ece', signed=True)}, "
            f"Δaccuracy {num(r['d_accuracy'], 3, signed=True)}; temperature scaling ΔECE "
            f"{num(t.get('d_ece'), 3, signed=True)}."
        )
    lines.append("")
    for sub in ("nullspace", f"direction-{main}", f"steer-{main}"):
        section = out / sub / "section.md"
        if section.is_file():
            text = section.read_text().replace("](figures/", f"]({sub}/figures/")
            lines += [text, ""]
    return "\n".join(lines)


def issue17_steps(
    args: argparse.Namespace,
    out: Path,
    layers: dict[str, Any],
    log: dict[str, Any],
    want: Any,
) -> dict[str, Any]:
    """Issue 17's steering tests (scripts/findings_steer.py): the steps wanted now run, the
    others' outputs already in ``out`` are summarised again; ``steer-LABEL.json``."""
    import findings_steer as fs

    label = fs.slug(args.label or out.name)
    boot = ["--n-boot", str(args.n_boot)]
    est, tqa = args.main_estimator, args.truthfulqa
    main, tqa_dir = out / f"direction-{est}", out / f"direction-truthfulqa-{est}"
    kw: dict[str, Any] = {"out": out, "label": label, "boot": boot}
    found: dict[str, Any] = {}
    if tqa:
        run = step if want("truthfulqa") else _skip
        found["truthfulqa"] = fs.truthfulqa_steps(
            run, log, truthfulqa=tqa, mmlu_direction=main, estimator=est,
            fit_fraction=args.indomain_fit_fraction, **kw,
        )  # fmt: skip
        run = step if want("truncated") else _skip
        fits = {  # fit here when the steps that fit them did not run
            "mmlu": fs.fit_argv(args.mmlu, main, est, "--category", args.source_category),
            "truthfulqa": fs.fit_argv(
                tqa, tqa_dir, est, "--fit-fraction", f"{args.indomain_fit_fraction:.6g}"
            ),
        }
        directions = {
            k: fs.ensure_direction(run, log, f"{k}-direction", v) for k, v in fits.items()
        }
        depths = fs.truncated_depths(args.truncated_layers, layers)
        found["truncated"] = fs.truncated_steps(
            run, log, stores={"mmlu": args.mmlu, "truthfulqa": tqa}, directions=directions,
            depths=depths, **kw,
        )  # fmt: skip
    if args.overconfident:
        run = step if want("overconfident") else _skip
        online = None
        if args.model:
            online = {"model": args.model, "dtype": args.dtype, "limit": args.overconfident_limit,
                      "random": args.online_random, "layers": args.overconfident_layers}  # fmt: skip
        found["overconfident"] = fs.overconfident_steps(
            run, log, store=args.overconfident, estimator=est, category=args.source_category,
            online=online, **kw,
        )  # fmt: skip
    if found:
        fs.write_summary(out, label, found)
    return found


def _skip(name: str, argv: list[str], log: dict[str, Any]) -> bool:
    """A step not run now (``--only``): its earlier outputs, if any, are summarised."""
    return False


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options; a bad depth list is a usage error (exit 2, nothing written)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mmlu", required=True, help="the full-MMLU store")
    p.add_argument("--truthfulqa", help="the TruthfulQA MC1 store of the same model")
    p.add_argument("--out", default="reports/findings")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--main-estimator", choices=ESTIMATORS, default="pca")
    p.add_argument("--source-category", default="humanities")
    p.add_argument("--skip-analysis", action="store_true")
    p.add_argument("--label", help="the model's name in the outputs (default: the folder name)")
    p.add_argument("--model", help="the stores' model, for steer --online (name, folder, .gguf)")
    p.add_argument("--dtype", default="auto", help="the online model's dtype")
    p.add_argument(
        "--online-layers",
        default="auto",
        help="depths to steer online: auto (inside the correction phase) or a list, e.g. 20,24",
    )
    p.add_argument("--online-limit", type=int, default=100, help="dev and test examples online")
    p.add_argument("--online-random", type=int, default=2, help="random directions online")
    p.add_argument("--fewshot", help="a K-shot store of the same questions (may be unfinished)")
    p.add_argument(
        "--indomain-fit-fraction",
        type=float,
        default=1 / 3,
        help="share of TruthfulQA the in-domain direction is fit on; the rest is split in half "
        "into dev and test (default 1/3: thirds)",
    )
    p.add_argument(
        "--truncated-layers",
        default="auto",
        help="depths to steer and read at: auto (the MMLU plateau to the depth before the last, "
        "at most 4) or a list, e.g. 24,25,26,27",
    )
    p.add_argument("--overconfident", help="a store extracted with an overconfidence template")
    p.add_argument(
        "--overconfident-limit", type=int, default=300, help="dev and test examples online"
    )
    p.add_argument(
        "--overconfident-layers",
        default="auto",
        help="depths of the online check: auto (the last and the middle of the store's "
        "correction phase) or a list",
    )
    p.add_argument(
        "--only",
        default="",
        help="comma-separated steps to run now (analysis,nullspace,direction,online,fewshot,"
        "truthfulqa,truncated,overconfident); "
        "the others' outputs already in --out are summarised again",
    )
    args = p.parse_args(argv)
    for opt in ("online_layers", "truncated_layers", "overconfident_layers"):
        spec = getattr(args, opt)
        if spec != "auto" and not all(x.strip().isdigit() for x in spec.split(",")):
            flag = "--" + opt.replace("_", "-")
            p.error(f"{flag}: 'auto' or depths like 20,24, got {spec!r}")
    return args


def analysis_step(args: argparse.Namespace, out: Path, log: dict[str, Any]) -> None:
    """Step 1: ``layercal analyze`` on both stores."""
    tqa = [args.truthfulqa] if args.truthfulqa else []
    boot = ["--n-boot", str(args.n_boot)]
    step("analysis", ["analyze", args.mmlu, *tqa, "--out", str(out / "analysis"), *boot], log)


def nullspace_step(args: argparse.Namespace, out: Path, log: dict[str, Any]) -> None:
    """Step 2: ``layercal nullspace`` on the MMLU store (at most 200 resamples)."""
    n_boot = str(min(args.n_boot, 200))
    step(
        "nullspace",
        ["nullspace", args.mmlu, "--out", str(out / "nullspace"), "--n-boot", n_boot],
        log,
    )


def direction_steps(args: argparse.Namespace, out: Path, log: dict[str, Any]) -> None:
    """Steps 3 and 4: ``direction fit`` with every estimator, then ``steer`` with each."""
    boot = ["--n-boot", str(args.n_boot)]
    tqa = args.truthfulqa
    compare = ["--compare", f"truthfulqa={tqa}"] if tqa else []
    transfer = ["--transfer", f"truthfulqa={tqa}"] if tqa else []
    for est in ESTIMATORS:
        d = out / f"direction-{est}"
        fit = ["direction", "fit", args.mmlu, "-o", str(d), "--estimator", est]
        if step(f"direction-{est}", [*fit, "--category", args.source_category, *compare], log):
            steer = ["steer", args.mmlu, "--direction", str(d)]
            step(
                f"steer-{est}",
                [*steer, "--out", str(out / f"steer-{est}"), *boot, *transfer],
                log,
            )


def online_steps(
    args: argparse.Namespace,
    out: Path,
    layers: dict[str, Any],
    log: dict[str, Any],
    run: bool,
) -> dict[str, Any]:
    """Step 5 (with ``--model``): ``steer --online`` with the main direction at the depths of
    :func:`online_layers` when ``run``; the summary of every such folder in ``out``."""
    online: dict[str, Any] = {}
    if not args.model:
        return online
    d = out / f"direction-{args.main_estimator}"
    for layer in online_layers(args.online_layers, layers):
        folder = out / f"online-{args.main_estimator}-L{layer}"
        if run:
            argv = ["steer", args.mmlu, "--direction", str(d), "--out", str(folder), "--online"]
            argv += ["--model", args.model, "--dtype", args.dtype, "--layer", str(layer)]
            argv += ["--limit", str(args.online_limit), "--random", str(args.online_random)]
            step(f"online-L{layer}", [*argv, "--n-boot", str(args.n_boot)], log)
        if (folder / "meta.json").is_file():
            online[str(layer)] = online_summary(folder)
    return online


def fewshot_step(
    args: argparse.Namespace, out: Path, log: dict[str, Any], run: bool
) -> dict[str, Any] | None:
    """Step 6 (with ``--fewshot``): :func:`fewshot_compare` into ``out/fewshot`` when ``run``;
    else the summary an earlier run left there (None without one)."""
    fewshot = _read_json(out / "fewshot" / "summary.json")
    if args.fewshot and run:
        t0 = time.perf_counter()
        fewshot = fewshot_compare(args.mmlu, args.fewshot, out / "fewshot", args.n_boot)
        log["fewshot"] = {"rc": 0, "seconds": round(time.perf_counter() - t0, 1)}
    return fewshot


def estimator_cosines(out: Path) -> dict[str, float]:
    """Cosines between the directions the estimators fitted, ``"a|b"`` with a < b."""
    import numpy as np

    vecs = {}
    for e in ESTIMATORS:
        f = out / f"direction-{e}" / "direction.npz"
        if f.is_file():
            vecs[e] = np.load(f)["vector"]
    return {f"{a}|{b}": float(vecs[a] @ vecs[b]) for a in vecs for b in vecs if a < b}


def collect(args: argparse.Namespace, out: Path, **parts: Any) -> dict[str, Any]:
    """``findings.json``: the stores, the steps' records (``parts["steps"]``), and each
    command's numbers read back from its output folder."""
    found: dict[str, Any] = {
        "label": args.label or out.name,
        "stores": {"mmlu": args.mmlu, "truthfulqa": args.truthfulqa, "fewshot": args.fewshot},
        "steps": parts["steps"],
        "layers": parts["layers"],
        "nullspace": nullspace_summary(out / "nullspace"),
        "direction": {e: direction_summary(out / f"direction-{e}") for e in ESTIMATORS},
        "steer": {
            e: steer_summary(out / f"steer-{e}")
            for e in ESTIMATORS
            if (out / f"steer-{e}" / "meta.json").is_file()
        },
        "online": parts["online"],
        "fewshot": parts["fewshot"],
        "steer_tests": parts["steer_tests"],
    }
    found["estimator_cosines"] = estimator_cosines(out)
    return found


def write_findings(found: dict[str, Any], out: Path, main_estimator: str) -> int:
    """``findings.json`` and ``findings.md``; exit status 1 when a step failed."""
    (out / "findings.json").write_text(json.dumps(found, indent=2, default=str) + "\n")
    (out / "findings.md").write_text(draft(found, out, main_estimator))
    failed = [k for k, v in found["steps"].items() if v["rc"] != 0]
    print(
        f"\nwrote {out}/findings.json and findings.md" + (f"; failed: {failed}" if failed else "")
    )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    only = {x for x in args.only.split(",") if x}

    def want(name: str) -> bool:
        return not only or name in only

    # with --only, the steps run before keep their records
    log = (_read_json(out / "findings.json") or {}).get("steps", {}) if only else {}
    if want("analysis") and not args.skip_analysis:
        analysis_step(args, out, log)
    if want("nullspace"):
        nullspace_step(args, out, log)
    if want("direction"):
        direction_steps(args, out, log)
    layers = layer_summary(out / "analysis")
    online = online_steps(args, out, layers, log, want("online"))
    fewshot = fewshot_step(args, out, log, want("fewshot"))
    steer_tests = issue17_steps(args, out, layers, log, want)
    found = collect(
        args, out, steps=log, layers=layers, online=online, fewshot=fewshot, steer_tests=steer_tests
    )
    return write_findings(found, out, args.main_estimator)


if __name__ == "__main__":
    sys.exit(main())
