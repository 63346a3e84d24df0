"""Plain-language findings generated from the numbers of one analysis, and number formatting.

Every sentence is derived from ``AnalysisResult.layers`` and ``.landmarks``; where the data do
not support a claim (accuracy at chance, a ΔECE interval that includes 0) the sentence says so.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from analyze.report import plot as P
from analyze.results import AnalysisResult

MINUS = "\u2212"
GAP_TOLERANCE = 0.02  # |confidence - accuracy| below this counts as "matches"


def num(x: Any, digits: int | None = None) -> str:
    """A metric value: 2 decimals, 3 below 0.1 (ECE of a good model); true minus sign."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    v = float(x)
    d = digits if digits is not None else (2 if abs(v) >= 0.1 else 3)
    return f"{v:.{d}f}".replace("-", MINUS)


def pct(x: Any, *, trim: bool = False) -> str:
    """A proportion as a percentage with one decimal (``0.265`` -> ``26.5%``); ``trim`` drops a
    trailing ``.0`` (``0.25`` -> ``25%``, for round numbers such as chance)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    s = f"{100 * float(x):.1f}"
    return (s[:-2] if trim and s.endswith(".0") else s).replace("-", MINUS) + "%"


def ci(lo: Any, hi: Any, fmt: Any = num) -> str:
    """``95% CI [lo, hi]``, or an empty string when the interval is missing."""
    if lo is None or hi is None or not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
        return ""
    return f"95% CI [{fmt(lo)}, {fmt(hi)}]"


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


def _thresholds(result: AnalysisResult) -> tuple[float | None, float | None]:
    """Chance accuracy 1/K and the rise threshold: ``landmarks["rise_threshold"]``, else
    1/K + 0.05."""
    k = P.chance(result)
    t = result.landmarks.get("rise_threshold")
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        return k, float(t)
    return k, (k + 0.05 if k is not None else None)


def ends_at_chance(result: AnalysisResult) -> bool:
    """Whether last-layer accuracy is not clearly above chance: its interval reaches 1/K, or
    (without an interval) it is below the rise threshold."""
    k, threshold = _thresholds(result)
    last = int(P.layer_values(result)[-1])
    acc, lo = value_at(result, "accuracy", last), value_at(result, "accuracy_lo", last)
    if k is None or acc is None:
        return False
    return lo <= k if lo is not None else acc < (threshold if threshold is not None else k)


def _accuracy(result: AnalysisResult) -> list[str]:
    lv = P.layer_values(result)
    first, last = int(lv[0]), int(lv[-1])
    acc = P.column(result.layers, "accuracy")
    if acc is None:
        return []
    k, threshold = _thresholds(result)
    chance_txt = f"chance ({pct(k, trim=True)})" if k is not None else "chance"
    rise = P.landmark_layer(result, "rise_layer")
    plateau = P.landmark_layer(result, "plateau_layer")
    final = _with_ci(result, "accuracy", last, pct)
    crossing = P.landmark_layer(result, "first_crossing_layer")
    guessing = "The calibration numbers below describe a model that is guessing on this data."
    if rise is None and crossing is not None:
        return [
            f"Accuracy does not rise above {chance_txt} for good: it crosses the rise threshold "
            f"({pct(threshold)}) at layer {crossing} ({pct(value_at(result, 'accuracy', crossing))})"
            f" but is {final} at the last layer. {guessing}"
        ]
    if rise is None:
        span = f"between {pct(acc.min())} and {pct(acc.max())}"
        limit = f" (the rise threshold is {pct(threshold)})" if threshold is not None else ""
        return [
            f"Accuracy never rises clearly above {chance_txt}: over the {len(lv)} layers it stays "
            f"{span}{limit}, and it is {final} at the last layer. {guessing}"
        ]
    if ends_at_chance(result):
        return [
            f"Accuracy first reaches the rise threshold at layer {rise} "
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
            "No peak-miscalibration layer is defined (it is looked for after the rise in "
            f"accuracy), so there is no correction phase to report. ECE ranges from {num(ece[lo])} "
            f"(layer {lv[lo]}) to {num(ece[hi])} (layer {lv[hi]}) and is {num(ece[-1])} at the "
            "last layer."
        ]
    e_peak, e_last = value_at(result, "ece", peak), value_at(result, "ece", last)
    cp = P.correction_phase(result)
    if cp is None or peak == last:
        return [f"ECE is highest at the last layer ({num(e_last)}): there is no correction phase."]
    return [_phase_sentence(result, cp, e_peak, e_last), *_confidence_sentence(cp)]


def _phase_sentence(
    result: AnalysisResult, cp: dict[str, Any], e_peak: float | None, e_last: float | None
) -> str:
    """The ΔECE over (peak, last] and what it means: a correction phase only when the interval
    excludes 0, accuracy is above chance and confidence (not accuracy) is what moved."""
    d, d_hi = cp.get("delta_ece"), cp.get("delta_ece_hi")
    interval = ci(cp.get("delta_ece_lo"), d_hi)
    delta = f"ΔECE {num(d)}" + (f", {interval}" if interval else "")
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
    detail += f"; MCE {num(mce)}" if mce is not None else ""
    out = [
        f"At the last layer the model is {state}: mean confidence {num(conf)} against accuracy "
        f"{pct(acc)} ({detail})."
    ]
    t, ts = value_at(result, "temperature", last), value_at(result, "ece_temperature_scaled", last)
    # T-scaled ECE is measured on the held-out half: compare it with the unscaled ECE there
    base = value_at(result, "ece_eval", last)
    where = " on the held-out examples" if base is not None else ""
    base = base if base is not None else value_at(result, "ece", last)
    if t is not None and ts is not None and base is not None:
        out.append(
            f"Temperature scaling (T = {num(t, 2)}) changes the last-layer ECE{where} from "
            f"{num(base)} to {num(ts)}: the baseline any calibration intervention has to beat."
        )
    return out


def findings(result: AnalysisResult) -> list[str]:
    """Plain-language findings, one sentence (or two) per item, generated from the numbers:
    where accuracy rises (or that it never does), whether there is a significant confidence
    correction phase (ΔECE and its interval), and how calibrated the last layer is."""
    return _accuracy(result) + _calibration(result) + _last_layer(result)
