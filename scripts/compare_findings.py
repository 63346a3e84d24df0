"""Side by side: the outputs of ``scripts/findings.py`` for several models.

    python scripts/compare_findings.py reports/findings-qwen reports/findings-smollm2 \
        --out reports/findings-compare [--figures docs/figures/findings]

Reads each run's ``findings.json`` and its analysis tables (nothing is recomputed) and writes
into ``--out``:

- ``side_by_side.json``: per model, every number docs/findings.md quotes in its comparison;
- ``layers.csv``: every model's per-layer table of both stores, with ``relative_depth``;
- ``side_by_side.md``: the comparison tables;
- ``figures/models_over_depth.png`` (and ``.svg``): accuracy, ECE, mean confidence and option
  mass over relative depth, one colour per model, MMLU solid, TruthfulQA dashed, chance dotted.

``--figures DIR`` also copies that figure and each run's main analysis figures to ``DIR`` (the
committed figures of docs/findings.md).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import polars as pl

from analyze.interventions import ESTIMATORS
from analyze.report.numbers import MISSING, num, with_ci


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def analysed_stores(found: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, name) of the run's analysed stores: kind mmlu / truthfulqa, name the folder that
    ``layercal analyze`` wrote for it (and its key in ``found["layers"]``)."""
    stores = found.get("stores") or {}
    return [
        (kind, Path(stores[kind].rstrip("/")).stem)
        for kind in ("mmlu", "truthfulqa")
        if stores.get(kind)
    ]


def store_layers(run: Path, found: dict[str, Any]) -> pl.DataFrame:
    """Per-layer tables of the run's analysed stores, labelled mmlu / truthfulqa."""
    frames = []
    for kind, name in analysed_stores(found):
        table = run / "analysis" / name / "layers.csv"
        if not table.is_file():
            continue
        df = pl.read_csv(table)
        last = df["layer"].max()
        frames.append(
            df.with_columns(
                pl.lit(found["label"]).alias("model"),
                pl.lit(kind).alias("dataset"),
                (pl.col("layer") / last).alias("relative_depth"),
            )
        )
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def _row(rows: list[dict[str, Any]], method: str) -> dict[str, Any] | None:
    return next((r for r in rows if r.get("method") == method), None)


def steer_rows(st: dict[str, Any]) -> dict[str, Any]:
    """The test-split rows that matter: the direction, temperature, the best random direction
    by ECE, null-space scaling; and the transfer of the direction to each target."""
    rows = st.get("test") or []
    random = [r for r in rows if str(r.get("method", "")).startswith("random")]
    out = {
        "alpha": (st.get("chosen") or {}).get("direction"),
        "direction": _row(rows, "direction"),
        "temperature": _row(rows, "temperature"),
        "nullspace": next((r for r in rows if "null" in str(r.get("method", ""))), None),
        "random_best": min(random, key=lambda r: r["d_ece"]) if random else None,
        "random_mean_d_ece": (sum(r["d_ece"] for r in random) / len(random)) if random else None,
        "n_random": len(random),
    }
    transfer: dict[str, dict[str, Any]] = {}
    for r in st.get("transfer") or []:
        transfer.setdefault(str(r.get("target")), {})[str(r.get("method"))] = r
    out["transfer"] = transfer
    return out


def summarise(found: dict[str, Any]) -> dict[str, Any]:
    direction = found.get("direction") or {}
    return {
        "label": found["label"],
        "stores": found.get("stores"),
        "layers": found.get("layers"),
        "nullspace": found.get("nullspace"),
        "direction": {
            e: {
                "window": (direction.get(e) or {}).get("window"),
                "window_source": (direction.get(e) or {}).get("window_source"),
                "diagnostics": (direction.get(e) or {}).get("diagnostics"),
            }
            for e in ESTIMATORS
            if direction.get(e)
        },
        "estimator_cosines": found.get("estimator_cosines"),
        "steer": {e: steer_rows(s) for e, s in (found.get("steer") or {}).items()},
        "online": {
            layer: {**steer_rows(s), "baseline": s.get("baseline")}
            for layer, s in (found.get("online") or {}).items()
        },
        "fewshot": found.get("fewshot"),
    }


def _ci(r: dict[str, Any] | None, key: str) -> str:
    """``±value [lo, hi]`` of a signed change, 3 decimals."""
    return with_ci(r, key, signed=True)


def _phase(cp: dict[str, Any] | None) -> str:
    """``(start, end] | ΔECE [lo, hi]`` of a correction phase, or ``none | —``."""
    return f"({cp['start']}, {cp['end']}] | {_ci(cp, 'delta_ece')}" if cp else f"none | {MISSING}"


def landmark_table(models: list[dict[str, Any]]) -> list[str]:
    out = ["## Depth landmarks and the correction phase", ""]
    out += [
        "| model | store | n | last accuracy | last ECE | largest ECE (layer) | rise | plateau "
        "| peak | correction phase | ΔECE [95% CI] | significant |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in models:
        for name, s in (m["layers"] or {}).items():
            lm = s.get("landmarks") or {}
            cp = lm.get("correction_phase")
            out.append(
                f"| {m['label']} | {name} | {s.get('n')} | {num(s['accuracy_last'], 3)} | "
                f"{num(s['ece_last'], 3)} | {num(s['max_ece'], 3)} ({s['max_ece_layer']}) | "
                f"{lm.get('rise_layer')} | {lm.get('plateau_layer')} | "
                f"{lm.get('peak_miscalibration_layer')} | {_phase(cp)} | "
                f"{cp.get('significant') if cp else MISSING} |"
            )
    return out


def steer_table(models: list[dict[str, Any]]) -> list[str]:
    out = ["## Steering at the last layer (humanities test split)", ""]
    out += [
        "| model | estimator | α | ΔECE direction | Δaccuracy | ΔECE temperature | "
        "ΔECE null-space scaling | ΔECE best random (mean of n) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in models:
        for est, s in m["steer"].items():
            d = s["direction"] or {}
            out.append(
                f"| {m['label']} | {est} | {num(s['alpha'], spec='g')} | "
                f"{_ci(s['direction'], 'd_ece')} | {num(d.get('d_accuracy'), 3, signed=True)} | "
                f"{_ci(s['temperature'], 'd_ece')} | {_ci(s['nullspace'], 'd_ece')} | "
                f"{_ci(s['random_best'], 'd_ece')} "
                f"({num(s['random_mean_d_ece'], 3, signed=True)} of {s['n_random']}) |"
            )
    return out


def transfer_table(models: list[dict[str, Any]]) -> list[str]:
    out = ["## Transfer of the direction (α, d, s unchanged)", ""]
    out += [
        "| model | estimator | target | ΔECE direction | ΔECE temperature |",
        "|---|---|---|---|---|",
    ]
    for m in models:
        for est, s in m["steer"].items():
            for target, rows in s["transfer"].items():
                out.append(
                    f"| {m['label']} | {est} | {target} | {_ci(rows.get('direction'), 'd_ece')} "
                    f"| {_ci(rows.get('temperature'), 'd_ece')} |"
                )
    return out


def online_table(models: list[dict[str, Any]]) -> list[str]:
    online = [(m, layer, s) for m in models for layer, s in m["online"].items()]
    if not online:
        return []
    out = ["## Steering online inside the correction phase", ""]
    out += [
        "| model | layer | α | ΔECE direction | Δaccuracy | ΔECE best random | "
        "online α = 0 vs stored lens |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, layer, s in online:
        b = s.get("baseline") or {}
        d = s["direction"] or {}
        out.append(
            f"| {m['label']} | {layer} | {num(s['alpha'], spec='g')} | "
            f"{_ci(s['direction'], 'd_ece')} | {num(d.get('d_accuracy'), 3, signed=True)} | "
            f"{_ci(s['random_best'], 'd_ece')} | "
            f"{num(b.get('max_abs_diff_vs_stored'), spec='.3g')} "
            f"(tol {num(b.get('tolerance'), spec='.3g')}) |"
        )
    return out


def fewshot_table(models: list[dict[str, Any]]) -> list[str]:
    few = [(m, m["fewshot"]) for m in models if m.get("fewshot")]
    if not few:
        return []
    out = ["## Few-shot against zero-shot on the same questions", ""]
    out += [
        "| model | n | prompt | last accuracy | last ECE | rise | plateau | correction phase "
        "| ΔECE [95% CI] | zero-shot's phase on the test half | its ΔECE [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, f in few:
        fixed = f.get("fixed_window") or {}
        for name in ("zero-shot", "few-shot"):
            s = f[name]
            lm = s["landmarks"]
            w = fixed.get(name)
            same = (
                f"({fixed['window'][0]}, {fixed['window'][1]}] | {_ci(w, 'delta_ece')}"
                if w
                else f"{MISSING} | {MISSING}"
            )
            out.append(
                f"| {m['label']} | {f['n']} | {name} | {num(s['accuracy_last'], 3)} | "
                f"{num(s['ece_last'], 3)} | {lm.get('rise_layer')} | {lm.get('plateau_layer')} | "
                f"{_phase(lm.get('correction_phase'))} | {same} |"
            )
    return out


def markdown(models: list[dict[str, Any]]) -> str:
    """``side_by_side.md``: one table per part of the experiment (empty parts left out)."""
    out = ["# Side by side", ""]
    tables = (landmark_table, steer_table, transfer_table, online_table, fewshot_table)
    for table in tables:
        lines = table(models)
        if lines:
            out += [*lines, ""]
    return "\n".join(out[:-1]) + "\n"


def figure(layers: pl.DataFrame, chance: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("accuracy", "accuracy"),
        ("ece", "ECE"),
        ("mean_confidence", "mean confidence (over the options)"),
        ("option_mass", "option mass"),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(17, 4), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, model in enumerate(layers["model"].unique(maintain_order=True)):
        for dataset, style in (("mmlu", "-"), ("truthfulqa", "--")):
            d = layers.filter((pl.col("model") == model) & (pl.col("dataset") == dataset))
            if not d.height:
                continue
            x = d["relative_depth"].to_numpy()
            for ax, (col, _) in zip(axes, panels):
                ax.plot(x, d[col].to_numpy(), style, color=colours[i], label=f"{model} {dataset}")
                if f"{col}_lo" in d.columns and d[f"{col}_lo"].null_count() < d.height:
                    ax.fill_between(
                        x, d[f"{col}_lo"].to_numpy(), d[f"{col}_hi"].to_numpy(),
                        color=colours[i], alpha=0.12,
                    )  # fmt: skip
    for dataset, value in chance.items():
        axes[0].axhline(value, ls=":", color="grey", lw=1)
        axes[0].annotate(f"chance {dataset} {value:.3f}", (0.0, value), fontsize=7, color="grey")
    for ax, (_, title) in zip(axes, panels):
        ax.set_title(title)
        ax.set_xlabel("relative depth (layer / last layer)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    for ext in ("png", "svg"):
        fig.savefig(path.with_suffix(f".{ext}"), dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="+", help="output folders of scripts/findings.py")
    p.add_argument("--out", default="reports/findings-compare")
    p.add_argument("--figures", help="also copy the figures here (e.g. docs/figures/findings)")
    args = p.parse_args(argv)
    out = Path(args.out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    models, frames, chance = [], [], {}
    for run in map(Path, args.runs):
        found = _json(run / "findings.json")
        if found is None:
            print(f"{run}: no findings.json; run scripts/findings.py --out {run} first")
            return 2
        found.setdefault("label", run.name)
        models.append(summarise(found))
        frames.append(store_layers(run, found))
        for kind, name in analysed_stores(found):
            marks = ((found.get("layers") or {}).get(name) or {}).get("landmarks") or {}
            if marks.get("chance_accuracy") is not None:
                chance[kind] = float(marks["chance_accuracy"])
    layers = pl.concat([f for f in frames if f.height], how="diagonal_relaxed")
    layers.write_csv(out / "layers.csv")
    (out / "side_by_side.json").write_text(json.dumps(models, indent=2, default=str) + "\n")
    (out / "side_by_side.md").write_text(markdown(models))
    figure(layers, chance, out / "figures" / "models_over_depth.png")
    if args.figures:
        dest = Path(args.figures)
        dest.mkdir(parents=True, exist_ok=True)
        for ext in ("png", "svg"):
            shutil.copy(out / "figures" / f"models_over_depth.{ext}", dest)
        for run, m in zip(map(Path, args.runs), models):
            for f in ("metrics_over_depth.png", "confidence_over_depth.png"):
                src = run / "analysis" / "figures" / f
                if src.is_file():
                    shutil.copy(src, dest / f"{slug(m['label'])}-{f}")
            for f in sorted(run.glob("steer-pca/figures/*.png")):
                shutil.copy(f, dest / f"{slug(m['label'])}-{f.name}")
    print(f"wrote {out}/side_by_side.md, side_by_side.json, layers.csv, figures/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
