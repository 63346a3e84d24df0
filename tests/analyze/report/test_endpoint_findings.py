"""Tests of analyze.report.endpoint_findings: the sentences follow the numbers (a correction is
told from a rescaling, the primary contrast and the floor are quoted), and an analysis without
the endpoints gets none."""

from __future__ import annotations

import polars as pl

from analyze.report.endpoint_findings import endpoint_findings
from analyze.results import AnalysisResult

LAYERS = [0, 1, 2, 3]


def result(auroc_end: float, resolution_end: float) -> AnalysisResult:
    layers = pl.DataFrame(
        {
            "layer": LAYERS,
            "accuracy": [0.25, 0.6, 0.62, 0.62],
            "ece": [0.1, 0.3, 0.35, 0.08],
            "ece_floor": [0.05, 0.05, 0.05, 0.04],
            "smece": [0.09, 0.28, 0.33, 0.06],
            "smece_lo": [0.07, 0.25, 0.3, 0.05],
            "smece_hi": [0.12, 0.31, 0.37, 0.09],
            "gap": [0.1, 0.3, 0.35, 0.05],
            "auroc": [0.5, 0.6, 0.6, auroc_end],
            "brier_reliability": [0.02, 0.1, 0.12, 0.01],
            "brier_resolution": [0.0, 0.02, 0.02, resolution_end],
        }
    )
    cp = {
        "start": 2,
        "end": 3,
        "delta_ece": -0.27,
        "delta_nll": -0.4,
        "delta_nll_lo": -0.5,
        "delta_nll_hi": -0.3,
        "delta_brier": -0.1,
        "delta_brier_lo": -0.15,
        "delta_brier_hi": -0.05,
        "ece_floor_start": 0.06,
        "ece_floor_end": 0.05,
    }
    landmarks = {
        "rise_layer": 1,
        "rise_layer_interval": [1, 2],
        "plateau_layer_interval": [1, 1],
        "peak_layer_interval": [2, None],
        "landmark_bootstrap": {"n_boot": 500},
        "chance_accuracy": 0.25,
        "chance_best_constant": 0.27,
        "rise_layer_both_chances": 1,
        "correction_phase": cp,
        "plateau_to_last": {
            "end": 3,
            "delta_ece": -0.2,
            "delta_ece_lo": -0.3,
            "delta_ece_hi": -0.1,
            "delta_nll": -0.3,
            "delta_nll_lo": -0.4,
            "delta_nll_hi": -0.2,
            "delta_brier": -0.08,
            "halves": [{"plateau_layer": 1}, {"plateau_layer": 2}],
        },
    }
    return AnalysisResult(layers, pl.DataFrame(), landmarks, {}, {"n_examples": 400})


def test_a_correction_is_told_from_a_rescaling():
    text = " ".join(endpoint_findings(result(auroc_end=0.75, resolution_end=0.05)))
    assert "more than a rescaling" in text and "AUROC from 0.60 to 0.75" in text
    flat = " ".join(endpoint_findings(result(auroc_end=0.6, resolution_end=0.02)))
    assert "confidence rescaled" in flat


def test_primary_contrast_floor_and_intervals_are_quoted():
    text = " ".join(endpoint_findings(result(0.75, 0.05)))
    assert "layer 1 and 2" in text and "NLL by −0.30 (95% CI [−0.40, −0.20])" in text
    assert "rise 1–2; plateau 1; peak-miscalibration layer 2–none" in text
    assert "27.0%" in text and "from layer 1" in text
    assert "noise floor of 0.040 at n = 400" in text and "0.060 (95% CI" in text
    assert "NLL by −0.40 (95% CI [−0.50, −0.30])" in text


def test_no_endpoints_no_sentences():
    bare = AnalysisResult(
        pl.DataFrame({"layer": LAYERS, "ece": [0.1] * 4}), pl.DataFrame(), {}, {}, {}
    )
    assert endpoint_findings(bare) == []
