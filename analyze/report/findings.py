"""Plain-language findings generated from the numbers of one analysis (numbers printed by
:mod:`analyze.report.numbers`).

Every sentence is derived from ``AnalysisResult.layers`` and ``.landmarks``; where the data do
not support a claim (accuracy at chance, a ΔECE interval that includes 0) the sentence says so.
Numbers compared in one sentence come from the same examples: the correction phase's ECE at the
peak and at the last layer from its test half, temperature scaling's before and after from the
held-out half.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from analyze.report import plot as P
from analyze.report.numbers import ci, num, pct, span
from analyze.results import AnalysisResult

GAP_TOLERANCE = 0.02  # |confidence - accuracy| below this counts as "matches"
OPTION_MASS_FLOOR = 0.01  # below: the answer tokens are not what the model predicts there
CONFIDENCE_MEANING = (
    "Confidence is the probability of the chosen option under a softmax over the K answer-option "
    "tokens only (the full-vocabulary distribution renormalised over the options); option mass is "
    "the share of the full-vocabulary probability those tokens hold."
)


def value_at(result: AnalysisResult, name: str, layer: int) -> float | None:
    """The value of column ``name`` at ``layer`` (None when absent or NaN)."""
    col = P.column(result.layers, name)
    rows = np.flatnonzero(P.layer_values(result) == layer)
    if col is None or rows.size == 0 or not np.isfinite(col[rows[0]]):
        return None
    return float(col[rows[0]])


def _with_ci(result: AnalysisResult, name: str, layer: int, fmt: Any) -> str:
    """``value (95% CI [lo, hi])``, or the value alone when the table has no interval."""
    v = value_at(result, name, layer)
    interval = ci(value_at(result, f"{name}_lo", layer), value_at(result, f"{name}_hi", layer), fmt)
    return f"{fmt(v)} ({interval})" if interval else fmt(v)


def ends_at_chance(result: AnalysisResult) -> bool:
    """Whether last-layer accuracy is not clearly above chance: its lower 95% bound is not above
    chance (mean 1/K_i), or (without an interval) accuracy itself is not."""
    k = P.chance(result)
    last = int(P.layer_values(result)[-1])
    acc, lo = value_at(result, "accuracy", last), value_at(result, "accuracy_lo", last)
    if k is None or acc is None:
        return False
    return lo <= k if lo is not None else acc <= k


def _accuracy(result: AnalysisResult) -> list[str]:
    lv = P.layer_values(result)
    first, last = int(lv[0]), int(lv[-1])
    acc = P.column(result.layers, "accuracy")
    if acc is None:
        return []
    k = P.chance(result)
    chance_txt = f"chance ({pct(k, trim=True)})" if k is not None else "chance"
    rise = P.landmark_layer(result, "rise_layer")
    plateau = P.landmark_layer(result, "plateau_layer")
    final = _with_ci(result, "accuracy", last, pct)
    crossing = P.landmark_layer(result, "first_crossing_layer")
    guessing = "The calibration numbers below describe a model that is guessing on this data."
    if rise is None and crossing is not None:
        return [
            f"Accuracy does not rise above {chance_txt} for good: its lower 95% bound is above "
            f"chance at layer {crossing} ({pct(value_at(result, 'accuracy', crossing))}) but "
            f"accuracy is {final} at the last layer. {guessing}"
        ]
    if rise is None:
        span = f"between {pct(acc.min())} and {pct(acc.max())}"
        return [
            f"Accuracy never rises clearly above {chance_txt}: over the {len(lv)} layers it stays "
            f"{span} (no layer has its lower 95% bound above chance), and it is {final} at the "
            f"last layer. {guessing}"
        ]
    if ends_at_chance(result):
        return [
            f"Accuracy first rises clearly above chance at layer {rise} "
            f"({pct(value_at(result, 'accuracy', rise))}) but does not stay there: it is {final} "
            f"at the last layer, not clearly above {chance_txt}. Treat the landmarks below as "
            "noise-level until more examples confirm them."
        ]
    at_rise = pct(value_at(result, "accuracy", rise))
    reach = ""
    if plateau is not None and plateau != last:
        at_plateau = pct(value_at(result, "accuracy", plateau))
        reach = f" and reaches {at_plateau} by layer {plateau}, where it plateaus"
    ending = f"{reach}; it is {final} at the last layer."
    if rise == first:
        return [f"Accuracy is above {chance_txt} from the first layer on ({at_rise}){ending}"]
    if rise == first + 1:
        return [
            f"Accuracy is near {chance_txt} only at layer {first} and rises from layer {rise} "
            f"({at_rise}){ending}"
        ]
    return [
        f"Accuracy stays near {chance_txt} through layer {rise - 1}, starts to rise at layer "
        f"{rise} ({at_rise}){ending}"
    ]


def _calibration(result: AnalysisResult) -> list[str]:
    ece = P.column(result.layers, "ece")
    if ece is None:
        return []
    lv = P.layer_values(result)
    last = int(lv[-1])
    peak = P.landmark_layer(result, "peak_miscalibration_layer")
    if peak is None:
        lo, hi = int(np.nanargmin(ece)), int(np.nanargmax(ece))
        return [
            "No peak-miscalibration layer is defined (it is looked for from the accuracy "
            f"plateau on, once accuracy has risen), so there is no correction phase to report. "
            f"ECE ranges from {num(ece[lo])} (layer {lv[lo]}) to {num(ece[hi])} (layer {lv[hi]}) "
            f"and is {num(ece[-1])} at the last layer."
        ]
    cp = P.correction_phase(result)
    if cp is None or peak == last:
        e_last = value_at(result, "ece", last)
        return [
            f"ECE is highest at the last layer ({num(e_last)} over all examples; the peak was "
            "looked for on the selection half): there is no correction phase."
        ]
    # ECE at both ends from the examples the change is tested on (the correction phase's test
    # half); older results without them: the per-layer ECE of all examples
    e_peak = cp.get("ece_start", value_at(result, "ece", peak))
    e_last = cp.get("ece_end", value_at(result, "ece", last))
    return [_phase_sentence(result, cp, e_peak, e_last), *_confidence_sentence(cp)]


def _phase_sentence(
    result: AnalysisResult, cp: dict[str, Any], e_peak: float | None, e_last: float | None
) -> str:
    """The ΔECE over (peak, last] and what it means: a correction phase only when the interval
    excludes 0, accuracy is above chance and confidence (not accuracy) is what moved."""
    d, d_hi = cp.get("delta_ece"), cp.get("delta_ece_hi")
    interval = ci(cp.get("delta_ece_lo"), d_hi)
    delta = f"ΔECE {num(d)}" + (f", {interval}" if interval else "")
    if cp.get("n_test") is not None:  # the peak was chosen on other examples than these
        head = (
            f"On the {cp['n_test']} test examples (the peak layer was chosen on the other "
            f"{cp.get('n_selection')}), ECE is {num(e_peak)} at the peak-miscalibration layer "
            f"{cp['start']} and "
        )
    else:
        head = f"ECE peaks at {num(e_peak)} at layer {cp['start']} and "
    flag = cp.get("significant")
    if not interval and not isinstance(flag, bool):
        return (
            f"{head}ends at {num(e_last)} at the last layer ({delta}); without a bootstrap "
            "interval its significance is unknown."
        )
    sig = flag if isinstance(flag, bool) else float(d_hi or 0.0) < 0
    if not (sig and d is not None and float(d) < 0):
        return (
            f"{head}ends at {num(e_last)} at the last layer ({delta}); the interval includes "
            "0, so there is no significant correction phase."
        )
    falls = f"{head}falls to {num(e_last)} at the last layer ({delta})"
    if ends_at_chance(result):
        return (
            f"{falls}, but with accuracy at chance this is confidence receding towards a "
            "guess, not the correction of a model that knows the answers."
        )
    c_hi = cp.get("delta_confidence_hi")
    if c_hi is not None and math.isfinite(float(c_hi)) and float(c_hi) >= 0:
        return (
            f"{falls}, but mean confidence does not fall over these layers: the gap closes "
            "because accuracy catches up with confidence, not by a confidence correction."
        )
    return f"{falls}: a confidence correction phase."


def _confidence_sentence(cp: dict[str, Any]) -> list[str]:
    dc = cp.get("delta_confidence")
    if dc is None or not math.isfinite(float(dc)):
        return []
    dci = ci(cp.get("delta_confidence_lo"), cp.get("delta_confidence_hi"))
    span = f"({cp['start']}→{cp['end']})"
    return [
        f"Over the same layers {span} mean confidence changes by {num(dc)}"
        + (f" ({dci})." if dci else ".")
    ]


def _last_layer(result: AnalysisResult) -> list[str]:
    last = int(P.layer_values(result)[-1])
    acc, conf = value_at(result, "accuracy", last), value_at(result, "mean_confidence", last)
    if acc is None or conf is None:
        return []
    gap = conf - acc
    state = (
        "overconfident"
        if gap > GAP_TOLERANCE
        else "underconfident"
        if gap < -GAP_TOLERANCE
        else "about as confident as it is accurate"
    )
    mce = value_at(result, "mce", last)
    e_ci = ci(value_at(result, "ece_lo", last), value_at(result, "ece_hi", last))
    detail = f"ECE {num(value_at(result, 'ece', last))}" + (f", {e_ci}" if e_ci else "")
    if mce is not None:
        min_count = (result.meta.get("params") or {}).get("mce_min_count")
        bins = f" over bins of at least {min_count} examples" if min_count else ""
        detail += f"; MCE {num(mce)}{bins}"
    out = [
        f"At the last layer the model is {state}: mean confidence {num(conf)} against accuracy "
        f"{pct(acc)} ({detail})."
    ]
    t, ts = value_at(result, "temperature", last), value_at(result, "ece_temperature_scaled", last)
    # the T-scaled ECE is measured on the held-out half: it is compared with the unscaled ECE of
    # that half only, never with the ECE of all examples
    base = value_at(result, "ece_eval", last)
    if t is not None and ts is not None:
        change = (
            f"changes the last-layer ECE on the held-out examples from {num(base)} to {num(ts)}"
            if base is not None
            else f"gives the last layer an ECE of {num(ts)} on the held-out examples (their "
            "unscaled ECE is not in this table)"
        )
        out.append(
            f"Temperature scaling (T = {num(t, 2)}, fitted on the other half) {change}: the "
            "baseline any calibration intervention has to beat."
        )
    return out


def layer_runs(layers: Any) -> str:
    """Layers as runs: [0, 1, 2, 5, 7, 8] -> ``0–2, 5, 7–8``."""
    vals = sorted(int(x) for x in layers)
    runs: list[list[int]] = []
    for v in vals:
        if runs and v == runs[-1][-1] + 1:
            runs[-1].append(v)
        else:
            runs.append([v])
    return ", ".join(str(r[0]) if len(r) == 1 else span(r[0], r[-1]) for r in runs)


def low_option_mass_layers(result: AnalysisResult) -> list[int]:
    """Layers whose mean option mass is below OPTION_MASS_FLOOR (empty without the column)."""
    mass = P.column(result.layers, "option_mass")
    if mass is None:
        return []
    return [int(x) for x in P.layer_values(result)[mass < OPTION_MASS_FLOOR]]


def _option_mass(result: AnalysisResult) -> list[str]:
    """What confidence means, and the layers where the options hold under 1% of the
    full-vocabulary probability."""
    low = low_option_mass_layers(result)
    if not low:
        return [CONFIDENCE_MEANING]
    n = len(P.layer_values(result))
    which = (
        "every layer" if len(low) == n else f"layer{'s' if len(low) > 1 else ''} {layer_runs(low)}"
    )
    return [
        CONFIDENCE_MEANING,
        f"At {which} the answer options hold under 1% of the full-vocabulary probability "
        f"(mean option mass < {OPTION_MASS_FLOOR}): there the lens reads tokens the model does not "
        "predict, and confidence over the options describes a sliver of its distribution.",
    ]


def reading_guide(result: AnalysisResult) -> str:
    """How to read the numbers of a report beside its findings (which say what confidence
    means): chance, the rise, MCE's minimum bin count, where the correction phase is tested."""
    params = result.meta.get("params") or {}
    k = P.chance(result)
    parts = [
        f"Chance is the mean over examples of 1/K ({pct(k)})." if k is not None else "",
        "Accuracy has risen where its lower 95% bound stays above chance.",
        f"MCE counts only bins of at least {params['mce_min_count']} examples."
        if params.get("mce_min_count")
        else "",
        "The peak-miscalibration layer is chosen on one half of the examples and the correction "
        "phase is measured on the other, so choosing the peak does not bias its test.",
    ]
    return " ".join(p for p in parts if p)


def findings(result: AnalysisResult) -> list[str]:
    """Plain-language findings, one sentence (or two) per item, generated from the numbers:
    where accuracy rises (or that it never does), whether there is a significant confidence
    correction phase (ΔECE and its interval), how calibrated the last layer is, what confidence
    means and where the lens reads tokens the model does not predict (option mass < 1%)."""
    return _accuracy(result) + _calibration(result) + _last_layer(result) + _option_mass(result)
