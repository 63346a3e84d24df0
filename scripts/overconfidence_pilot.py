"""Issue 17.3's pilot: which prompt template makes Qwen's last layer overconfident?

Each pilot store holds the same 100 humanities questions extracted with one template
(``extract --template scripts/templates/NAME.json --category humanities --per-subject
40,humanities=120 --seed 0 --limit 100``; the default template is the lm-eval one). This script
analyses each with ``analyze.analyze_store`` and writes one row per template:

- the last layer: accuracy, mean confidence, ECE with its bootstrap interval, the ECE noise
  floor at n = 100 (``ece_floor``: the expected ECE of a perfectly calibrated predictor with the
  same confidences), smECE with its interval, the signed gap (confidence - accuracy) with the
  gap's bootstrap interval, NLL and Brier;
- the acceptance rule written before the pilot (issue 17.3): last-layer ECE >= 0.15 at
  accuracy >= 0.45 (``accepted``), and a second rule that asks for what the first stands for
  (``overconfident_beyond_default``): the gap above the default template's by more than its
  interval's half-width — a template that only moves ECE within its noise floor does not
  induce overconfidence;
- the plateau depth (landmarks) and the ECE there, to show where the overconfidence sits.

    python scripts/overconfidence_pilot.py stores/pilot-*.zarr \\
        --out docs/findings-data/overconfidence-pilot.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

from analyze import analyze_store, open_store
from analyze.calibration import answer_probs, bootstrap_ci, confidence_and_correct

ECE_AT_LEAST, ACCURACY_AT_LEAST = 0.15, 0.45  # issue 17.3's acceptance rule, fixed beforehand


def _gap_interval(store: Path, result: object, n_boot: int, seed: int) -> tuple[float, ...]:
    """The last layer's signed gap (mean confidence - accuracy) with a percentile bootstrap,
    from the analysis' answer-option logits, with the package's own softmax and bootstrap."""
    ds = open_store(store)
    order = np.asarray(result.examples["example"])  # type: ignore[attr-defined]
    label = np.asarray(ds["label"].values)[order]
    mask = np.asarray(ds["choice_mask"].values, bool)[order]
    z = np.asarray(result.examples["answer_logits"], np.float64)[:, -1]  # type: ignore[attr-defined]
    conf, correct = confidence_and_correct(answer_probs(z, mask), label)
    gap, lo, hi = bootstrap_ci(
        lambda c, y: c.mean() - y.mean(), conf, correct.astype(np.float64), n_boot=n_boot, seed=seed
    )
    return float(gap), float(lo), float(hi)


def pilot_row(store: Path, n_boot: int, seed: int) -> dict[str, object]:
    r = analyze_store(store, n_boot=n_boot, seed=seed, vocab_examples=None)
    last = r.layers.row(-1, named=True)
    plateau = r.landmarks.get("plateau_layer")
    at_plateau = r.layers.filter(pl.col("layer") == plateau) if plateau is not None else None
    gap, gap_lo, gap_hi = _gap_interval(store, r, n_boot, seed)
    assert abs(gap - last["gap"]) < 1e-6, (gap, last["gap"])  # the same examples as layers.csv
    name = store.name.removesuffix(".zarr").removeprefix("pilot-")
    return {
        "template": name,
        "n": last["n"],
        "accuracy": last["accuracy"],
        "mean_confidence": last["mean_confidence"],
        "ece": last["ece"],
        "ece_lo": last["ece_lo"],
        "ece_hi": last["ece_hi"],
        "ece_floor": last["ece_floor"],
        "smece": last["smece"],
        "smece_lo": last["smece_lo"],
        "smece_hi": last["smece_hi"],
        "gap": gap,
        "gap_lo": gap_lo,
        "gap_hi": gap_hi,
        "nll": last["nll"],
        "brier": last["brier"],
        "accepted": bool(last["ece"] >= ECE_AT_LEAST and last["accuracy"] >= ACCURACY_AT_LEAST),
        "plateau_layer": plateau,
        "ece_at_plateau": None if at_plateau is None else at_plateau["ece"][0],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stores", nargs="+", type=Path, help="pilot stores (pilot-default.zarr first)")
    p.add_argument("--out", type=Path, required=True, help="the CSV to write")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rows = [pilot_row(s, args.n_boot, args.seed) for s in args.stores]
    default = next((r for r in rows if r["template"] == "default"), None)
    for r in rows:  # the gap beyond the default template's interval (None without a default)
        r["overconfident_beyond_default"] = (
            None if default is None else bool(r["gap_lo"] > default["gap"])  # type: ignore[operator]
        )
    table = pl.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.write_csv(args.out)
    with pl.Config(tbl_cols=-1, tbl_width_chars=200, float_precision=3):
        print(table.select("template", "accuracy", "mean_confidence", "ece", "ece_floor",
                           "smece", "gap", "gap_lo", "gap_hi", "accepted",
                           "overconfident_beyond_default"))  # fmt: skip
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
