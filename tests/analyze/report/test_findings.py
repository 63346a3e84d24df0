"""analyze/report/findings.py: the plain-language findings say what the numbers say, and no
more."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import polars as pl
import pytest

from analyze.report.numbers import ci, num, pct
from analyze.report.write import findings, write_report
from analyze.results import AnalysisResult
from tests.analyze.report.synthetic import synthetic_result


def _with_phase(r: AnalysisResult, **changes) -> AnalysisResult:
    out = copy.deepcopy(r)
    out.landmarks["correction_phase"].update(changes)
    return out


def test_findings_significant_correction_phase(rising):
    text = " ".join(findings(rising))
    cp = rising.landmarks["correction_phase"]
    assert cp["significant"] and cp["delta_confidence_hi"] < 0
    assert f"starts to rise at layer {rising.landmarks['rise_layer']}" in text
    # both ends of the phase on the examples the change is tested on, not the all-example ECE
    assert (
        f"On the {cp['n_test']} test examples (the peak layer was chosen on the other "
        f"{cp['n_selection']}), ECE is {num(cp['ece_start'])} at the peak-miscalibration layer "
        f"{cp['start']} and falls to {num(cp['ece_end'])} at the last layer"
    ) in text
    assert cp["delta_ece"] == pytest.approx(cp["ece_end"] - cp["ece_start"])
    assert f"(ΔECE {num(cp['delta_ece'])}, {ci(cp['delta_ece_lo'], cp['delta_ece_hi'])})" in text
    assert "a confidence correction phase" in text and "no significant" not in text


def test_findings_of_an_older_phase_without_halves_use_the_layer_table(rising):
    r = copy.deepcopy(rising)
    for k in ("n_test", "n_selection", "ece_start", "ece_end"):
        r.landmarks["correction_phase"].pop(k)
    cp = r.landmarks["correction_phase"]
    text = " ".join(findings(r))
    assert f"ECE peaks at {num(r.layers['ece'][cp['start']])} at layer {cp['start']}" in text


def test_findings_interval_including_zero_is_not_a_correction_phase(rising):
    r = _with_phase(
        rising, delta_ece=-0.02, delta_ece_lo=-0.06, delta_ece_hi=0.01, significant=False
    )
    text = " ".join(findings(r))
    assert "(ΔECE −0.020, 95% CI [−0.060, 0.010]); the interval includes 0" in text
    assert "no significant correction phase" in text and "a confidence correction phase" not in text


def test_findings_accuracy_at_chance(flat):
    assert flat.landmarks["rise_layer"] is None
    text = " ".join(findings(flat))
    assert "Accuracy never rises clearly above chance (25%)" in text
    assert "(no layer has its lower 95% bound above chance)" in text
    assert flat.landmarks["first_crossing_layer"] is None
    lo = flat.layers["accuracy_lo"].to_numpy()
    assert (lo <= 0.25).all()  # what the sentence says, from the table
    assert "No peak-miscalibration layer is defined" in text and "correction phase:" not in text


def test_findings_threshold_crossed_by_noise(flat):
    r = copy.deepcopy(flat)
    r.landmarks["first_crossing_layer"] = 3
    r.layers = r.layers.with_columns(
        accuracy=pl.when(pl.col("layer") == 3).then(0.33).otherwise(pl.col("accuracy"))
    )
    text = " ".join(findings(r))
    assert "does not rise above chance (25%) for good" in text
    assert "its lower 95% bound is above chance at layer 3 (33.0%)" in text
    assert "guessing" in text and "No peak-miscalibration layer" in text


def test_findings_rise_that_does_not_hold(rising):
    r = copy.deepcopy(rising)
    last = pl.col("layer") == r.layers["layer"].max()
    r.layers = r.layers.with_columns(
        accuracy=pl.when(last).then(0.27).otherwise(pl.col("accuracy")),
        accuracy_lo=pl.when(last).then(0.22).otherwise(pl.col("accuracy_lo")),
    )
    text = " ".join(findings(r))
    assert "does not stay there" in text and "not clearly above chance (25%)" in text
    assert "confidence receding towards a guess" in text
    assert "a confidence correction phase" not in text


def test_findings_gap_closed_by_accuracy_not_confidence(rising):
    r = _with_phase(
        rising, delta_confidence=0.03, delta_confidence_lo=0.01, delta_confidence_hi=0.05
    )
    text = " ".join(findings(r))
    assert "accuracy catches up with confidence" in text
    assert "mean confidence changes by 0.030 (95% CI [0.010, 0.050])" in text


def test_findings_peak_at_last_layer():
    r = synthetic_result("late_peak", n_layers=12, n=300)
    assert (
        r.landmarks["peak_miscalibration_layer"] == 11 and r.landmarks["correction_phase"] is None
    )
    assert "ECE is highest at the last layer" in " ".join(findings(r))


def test_findings_without_intervals(rising):
    r = copy.deepcopy(rising)
    r.layers = r.layers.drop([c for c in r.layers.columns if c.endswith(("_lo", "_hi"))])
    for k in ("delta_ece_lo", "delta_ece_hi", "significant"):
        r.landmarks["correction_phase"].pop(k)
    text = " ".join(findings(r))
    assert "95% CI" not in text.split("mean confidence changes")[0]
    assert "without a bootstrap interval its significance is unknown" in text


def test_findings_last_layer_and_temperature(rising):
    text = findings(rising)
    i = next(j for j, t in enumerate(text) if t.startswith("At the last layer"))
    last = rising.layers.row(-1, named=True)
    state = "overconfident" if last["mean_confidence"] - last["accuracy"] > 0.02 else "about as"
    assert text[i].startswith(f"At the last layer the model is {state}")
    assert f"accuracy {pct(last['accuracy'])}" in text[i]
    assert f"MCE {num(last['mce'])} over bins of at least 10 examples" in text[i]
    # no unscaled ECE of the held-out half in this table: the T-scaled one is not compared with
    # the ECE of all examples
    assert text[i + 1].startswith(f"Temperature scaling (T = {last['temperature']:.2f}")
    assert f"gives the last layer an ECE of {num(last['ece_temperature_scaled'])}" in text[i + 1]
    assert num(last["ece"]) not in text[i + 1]


def test_temperature_before_and_after_are_on_the_held_out_half(rising):
    r = copy.deepcopy(rising)
    r.layers = r.layers.with_columns(ece_eval=pl.lit(0.082), ece_temperature_scaled=pl.lit(0.045))
    text = " ".join(findings(r))
    assert "changes the last-layer ECE on the held-out examples from 0.082 to 0.045" in text


def test_findings_say_what_confidence_is_and_where_the_options_hold_no_mass(rising):
    text = " ".join(findings(rising))
    assert "softmax over the K answer-option tokens only" in text
    assert "lens reads tokens the model does not predict" not in text  # mass >= 0.02 everywhere
    r = copy.deepcopy(rising)
    low = pl.col("layer").is_in([0, 1, 2, 3, 4, 5, 8])
    r.layers = r.layers.with_columns(
        option_mass=pl.when(low).then(0.004).otherwise(pl.col("option_mass"))
    )
    text = " ".join(findings(r))
    assert (
        "At layers 0–5, 8 the answer options hold under 1% of the full-vocabulary probability "
        "(mean option mass < 0.01): there the lens reads tokens the model does not predict"
    ) in text
    html = write_report([r], Path(tempfile.mkdtemp()), n_grid=2).read_text(encoding="utf-8")
    assert "lens reads tokens the model does not predict" in html
    assert "MCE counts only bins of at least 10 examples" in html  # the reading guide
    assert "measured on (test half)" in html  # the correction-phase table
    assert "MCE (bins ≥ 10)" in html  # the per-layer table
