"""What an analysis under a named lens adds: fixed-depth contrasts to the last depth.

Under ``layercal analyze --lens`` (a fitted lens, or ``logit`` named beside others) every layer
gets ΔECE to the last depth with a paired bootstrap interval (``delta_ece_to_last``, ``_lo``,
``_hi``), and ``landmarks.json`` gets ``lens_plateau_to_last``: the same contrast from the plateau to
the last depth, with agreement with the final answer, confidence, entropy and KL to final at
both ends — the numbers the question "is the correction phase the model's or the lens's?" is
decided on (docs/lenses.md). Both are measured on the landmarks' test half (the examples that
did not choose the plateau: the plateau is the selection half's, as for the correction phase),
so the contrast is not biased by the choice of its start.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from analyze.calibration import TERMS, draw_weights
from analyze.calibration.paired import paired_term_deltas

CALIBRATED_WITHIN = 0.05  # "about as calibrated as the last": the ΔECE interval inside ±0.05
DEFINITIONS = {
    "lens": "the lens every number of this analysis is read through: logit (the stored final "
    "norm and unembedding at every depth) or a lens fitted by `layercal lens fit` (a translator "
    "per depth before them, each example through the one fitted without it); see docs/lenses.md",
    "delta_ece_to_last": "layers.csv: ECE(last layer) - ECE(layer) on the test half of the "
    "selection split, with its paired bootstrap 95% interval (_lo, _hi); negative = the last "
    "layer is better calibrated",
    "lens_plateau_to_last": "from the plateau of the selection half (the correction phase's search "
    "start) to the last layer, on the test half: ECE at both ends, delta_ece and "
    "delta_confidence with paired bootstrap 95% intervals, agreement with the last layer's "
    "answer (1 - flip rate), mean confidence, entropy over the options and KL(last || layer) "
    f"at both ends; calibrated_like_last: the delta_ece interval lies inside "
    f"±{CALIBRATED_WITHIN}",
}


def lens_contrasts(
    layers: list[int],
    terms: NDArray[np.float64],
    selection: NDArray[np.bool_],
    landmarks: dict[str, Any],
    bins: int,
    boot: dict[str, Any],
) -> tuple[dict[str, NDArray[np.float64]], dict[str, Any] | None]:
    """Per-layer ΔECE to the last layer (columns) and ``lens_plateau_to_last`` (None: no plateau).

    ``terms``: (len(TERMS), L, n) per-example terms of the analysed examples; ``selection``:
    (n,) the landmarks' selection half; ``landmarks``: the analysis' landmarks; ``boot``: the
    bootstrap parameters (``n_boot``, ``seed``, ``alpha``).
    """
    n_boot, seed, alpha = int(boot["n_boot"]), int(boot["seed"]), float(boot["alpha"])
    t = {name: terms[i][:, ~selection] for i, name in enumerate(TERMS)}
    n_test = int((~selection).sum())
    n_layers = len(layers)
    nan = np.full(n_layers, np.nan)
    cols = {"delta_ece_to_last": nan, "delta_ece_to_last_lo": nan, "delta_ece_to_last_hi": nan}
    if n_test < 2:
        return cols, None
    weights = draw_weights(n_test, n_boot, seed) if n_boot > 0 else None
    last = {k: np.repeat(t[k][-1:], n_layers, axis=0) for k in ("correct", "conf")}
    d = paired_term_deltas(
        {"accuracy": t["correct"], "mean_confidence": t["conf"]},
        {"accuracy": last["correct"], "mean_confidence": last["conf"]},
        n_bins=bins,
        n_boot=n_boot,
        seed=seed,
        alpha=alpha,
        weights=weights,
    )
    cols = {
        "delta_ece_to_last": d["ece"]["delta"],
        "delta_ece_to_last_lo": d["ece"]["delta_lo"],
        "delta_ece_to_last_hi": d["ece"]["delta_hi"],
    }
    start = (landmarks.get("selection_split") or {}).get("search_start_layer")
    if start is None:
        return cols, None
    i, j = layers.index(int(start)), n_layers - 1
    lo, hi = float(d["ece"]["delta_lo"][i]), float(d["ece"]["delta_hi"][i])
    out: dict[str, Any] = {
        "start": int(start),
        "end": layers[j],
        "n_test": n_test,
        "ece_start": float(d["ece"]["base"][i]),
        "ece_end": float(d["ece"]["new"][i]),
        "delta_ece": float(d["ece"]["delta"][i]),
        "delta_ece_lo": lo,
        "delta_ece_hi": hi,
        "calibrated_like_last": bool(lo >= -CALIBRATED_WITHIN and hi <= CALIBRATED_WITHIN),
    }
    for key in ("delta", "delta_lo", "delta_hi"):
        out[key.replace("delta", "delta_confidence")] = float(d["mean_confidence"][key][i])
    for name, term in (
        ("accuracy", "correct"),
        ("mean_confidence", "conf"),
        ("entropy", "entropy"),
        ("kl_to_last", "kl_to_last"),
    ):
        out[f"{name}_start"], out[f"{name}_end"] = (float(t[term][x].mean()) for x in (i, j))
    out["agreement_with_last_start"] = 1.0 - float(t["flip"][i].mean())
    return cols, out


def with_lens(
    layers_df: pl.DataFrame, landmarks: dict[str, Any], record: dict[str, Any], extra: Any
) -> pl.DataFrame:
    """``layers_df`` with the ``lens`` column first and the ΔECE-to-last columns; ``landmarks``
    gets ``lens``, ``lens_plateau_to_last`` and their definitions (in place)."""
    cols, plateau = extra
    landmarks["lens"] = record
    landmarks["lens_plateau_to_last"] = plateau
    landmarks["definitions"].update(DEFINITIONS)
    if plateau is None:
        landmarks["notes"].append("no plateau, so no lens_plateau_to_last contrast")
    named = layers_df.with_columns(**{k: pl.Series(v) for k, v in cols.items()})
    return named.select(pl.lit(str(record["name"])).alias("lens"), pl.all())


def describe(landmarks: dict[str, Any]) -> str:
    """One line on the lens and its plateau-to-last contrast, for the command's output."""
    rec = landmarks["lens"]
    text = f"lens {rec.get('name')} ({rec.get('kind')}"
    text += ", transferred)" if rec.get("transfer") else ")"
    pt = landmarks.get("lens_plateau_to_last")
    if not isinstance(pt, dict):
        return text + ": no plateau"
    like = "inside" if pt["calibrated_like_last"] else "not inside"
    return (
        f"{text}: plateau {pt['start']} -> last {pt['end']}: ΔECE {pt['delta_ece']:+.3f} "
        f"[{pt['delta_ece_lo']:+.3f}, {pt['delta_ece_hi']:+.3f}] ({like} ±{CALIBRATED_WITHIN}), "
        f"agreement with the last answer at the plateau {pt['agreement_with_last_start']:.3f}, "
        f"confidence {pt['mean_confidence_start']:.3f} -> {pt['mean_confidence_end']:.3f}"
    )
