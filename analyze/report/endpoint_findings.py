"""Findings about issue 17's endpoints, in plain language, generated from the numbers: the
landmarks' bootstrap intervals and both chance figures, the threshold-free plateau-to-last
contrast (the primary result), the proper scores (NLL, Brier) over the correction phase, the
last layer's ECE against its noise floor and smooth ECE, and whether a fall in ECE is a
correction (AUROC or resolution rise) or a rescaling (the gap and reliability shrink alone).

They follow :func:`analyze.report.findings.findings` in the report.
"""

from __future__ import annotations

from typing import Any

from analyze.report import plot as P
from analyze.report.findings import value_at
from analyze.report.numbers import ci, num, pct, span
from analyze.results import AnalysisResult

# AUROC or resolution must rise by more than this over (peak, last] to count as a correction
SORTING_TOLERANCE = 0.01


def _with(d: dict[str, Any], key: str) -> str:
    """``d[key]`` with its interval in parentheses when ``key_lo``/``key_hi`` are there."""
    interval = ci(d.get(f"{key}_lo"), d.get(f"{key}_hi"))
    return num(d.get(key)) + (f" ({interval})" if interval else "")


def _interval_text(iv: Any) -> str | None:
    if not (isinstance(iv, list) and len(iv) == 2):
        return None
    lo, hi = ("none" if x is None else str(x) for x in iv)
    return lo if lo == hi else span(lo, hi)


def _landmarks(result: AnalysisResult) -> list[str]:
    lm = result.landmarks
    parts = []
    for key, name in (
        ("rise_layer_interval", "rise"),
        ("plateau_layer_interval", "plateau"),
        ("peak_layer_interval", "peak-miscalibration layer"),
    ):
        if (txt := _interval_text(lm.get(key))) is not None:
            parts.append(f"{name} {txt}")
    out = []
    if parts:
        n_boot = (lm.get("landmark_bootstrap") or {}).get("n_boot")
        out.append(
            f"Re-selected in each of {n_boot} bootstrap resamples, the landmarks fall at layers: "
            + "; ".join(parts)
            + " (95% of resamples)."
        )
    best = lm.get("chance_best_constant")
    if best is not None:
        both = lm.get("rise_layer_both_chances")
        clear = (
            f"accuracy stays clearly above both from layer {both}"
            if both is not None
            else "accuracy never stays clearly above both"
        )
        out.append(
            f"Always answering the most frequent letter scores {pct(best)} (chance, a uniform "
            f"guess: {pct(lm.get('chance_accuracy'))}); {clear}."
        )
    return out


def _plateau_to_last(result: AnalysisResult) -> list[str]:
    ptl = result.landmarks.get("plateau_to_last")
    if not isinstance(ptl, dict) or ptl.get("delta_ece") is None:
        return []
    plateaus = sorted({h["plateau_layer"] for h in ptl.get("halves") or []})
    where = " and ".join(str(p) for p in plateaus)
    if plateaus == [ptl["end"]]:
        return [
            f"Accuracy plateaus only at the last layer ({ptl['end']}) on both halves, so the "
            "plateau-to-last contrast is empty."
        ]
    return [
        f"Primary, threshold-free result: from the accuracy plateau (layer {where}, each chosen on "
        f"the other half of the examples) to the last layer, ECE changes by "
        f"{_with(ptl, 'delta_ece')}, NLL by {_with(ptl, 'delta_nll')} and Brier by "
        f"{_with(ptl, 'delta_brier')}."
    ]


def _proper_scores(cp: dict[str, Any]) -> list[str]:
    if cp.get("delta_nll") is None:
        return []
    floor = ""
    if cp.get("ece_floor_start") is not None:
        floor = (
            f" A perfectly calibrated predictor would show an ECE of {num(cp['ece_floor_start'])} "
            f"at the peak and {num(cp['ece_floor_end'])} at the last layer on these examples "
            "(the noise floor)."
        )
    return [
        f"Over the correction phase's layers the proper scores change too: NLL by "
        f"{_with(cp, 'delta_nll')}, Brier by {_with(cp, 'delta_brier')}." + floor
    ]


def _correction_or_rescaling(result: AnalysisResult, cp: dict[str, Any]) -> list[str]:
    i, j = int(cp["start"]), int(cp["end"])
    got = {
        k: (value_at(result, k, i), value_at(result, k, j))
        for k in ("gap", "auroc", "brier_resolution", "brier_reliability")
    }
    vals: dict[str, tuple[float, float]] = {}
    for k, (a, b) in got.items():
        if a is None or b is None:
            return []
        vals[k] = (a, b)
    (g0, g1), (a0, a1) = vals["gap"], vals["auroc"]
    (r0, r1), (q0, q1) = vals["brier_resolution"], vals["brier_reliability"]
    sorts = a1 - a0 > SORTING_TOLERANCE or r1 - r0 > SORTING_TOLERANCE
    verdict = (
        "the late layers also tell right answers from wrong ones better: more than a rescaling"
        if sorts
        else "AUROC and resolution do not rise, so the fall in ECE is confidence rescaled, not "
        "right and wrong answers told apart"
    )
    return [
        f"From layer {i} to {j} (all examples) the signed gap goes from {num(g0)} to {num(g1)}, "
        f"AUROC from {num(a0)} to {num(a1)}, Brier reliability from {num(q0)} to {num(q1)} and "
        f"resolution from {num(r0)} to {num(r1)}: {verdict}."
    ]


def _last_layer(result: AnalysisResult) -> list[str]:
    last = int(P.layer_values(result)[-1])
    ece, floor = value_at(result, "ece", last), value_at(result, "ece_floor", last)
    sm = value_at(result, "smece", last)
    if ece is None or floor is None or sm is None:
        return []
    n = result.meta.get("n_examples")
    near = " (at its floor: as small as this sample can show)" if ece <= 1.5 * floor else ""
    sm_ci = ci(value_at(result, "smece_lo", last), value_at(result, "smece_hi", last))
    return [
        f"The last layer's ECE {num(ece)} sits beside a noise floor of {num(floor)} at n = {n}"
        f"{near}; smooth ECE, which needs no bins, is {num(sm)}"
        + (f" ({sm_ci})." if sm_ci else ".")
    ]


def endpoint_findings(result: AnalysisResult) -> list[str]:
    """The sentences of the module docstring that the result's numbers support (none for an
    analysis without these columns and keys)."""
    out = _landmarks(result) + _plateau_to_last(result)
    cp = P.correction_phase(result)
    if cp is not None:
        out += _proper_scores(cp) + _correction_or_rescaling(result, cp)
    return out + _last_layer(result)
