"""Calibration of answer-option probabilities, per layer (numpy only).

Inputs follow one convention: ``logits`` (..., n, K) answer-token logits, ``choice_mask`` (n, K)
bool with False = option absent, ``label`` (n,) int; a leading axis is typically the layer L.

- :mod:`~analyze.calibration.metrics`: accuracy, ECE/MCE, Brier, NLL, entropy, KL to the last
  layer, flip rate, every layer at once; the implementation lives in private modules:
  ``_probs`` (softmax and per-example scores), ``_binning`` (ECE/MCE, mergeable BinStats),
  ``_bootstrap`` (percentile bootstrap), ``_checks`` (input validation).
- :mod:`~analyze.calibration.smooth`: smooth ECE (smECE, relplot's definition and bandwidth).
- :mod:`~analyze.calibration.floor`: the noise floor of binned ECE (a calibrated predictor's ECE
  at this sample, by seeded simulation).
- :mod:`~analyze.calibration.discrimination`: signed gap, AUROC, Brier decomposition (what
  tells a correction from a rescaling).
- :mod:`~analyze.calibration.smooth_bootstrap`: smECE's bootstrap replicates (bandwidth
  re-selected); :mod:`~analyze.calibration.endpoints`: all of these for rows of examples.
- :mod:`~analyze.calibration.landmark_bootstrap`: landmarks re-selected in each resample, the
  cross-fitted plateau-to-last contrast, the best constant-letter chance.
- :mod:`~analyze.calibration.paired`: paired bootstrap intervals of metric changes.
- :mod:`~analyze.calibration.temperature`: temperature scaling.
- :mod:`~analyze.calibration.splits`: the seeded per-subject split of examples.
- :mod:`~analyze.calibration.landmarks`: chance, rise, plateau, peak miscalibration (chosen on
  one half of the examples), correction phase (tested on the other half).
"""

from __future__ import annotations

from analyze.calibration._binning import (
    MCE_MIN_COUNT,
    BinStats,
    bin_index,
    bin_stats,
    bin_sums,
    ece,
    ece_equal_mass,
    ece_from_bins,
    ece_from_sums,
    mce,
    mce_from_bins,
    mce_from_sums,
)
from analyze.calibration._bootstrap import (
    bootstrap_ci,
    bootstrap_intervals,
    bootstrap_sums,
    draw_weights,
    per_layer_bootstrap,
)
from analyze.calibration._probs import (
    TERMS,
    answer_probs,
    confidence_and_correct,
    entropy,
    kl_divergence,
    log_softmax,
    per_example_terms,
)
from analyze.calibration.discrimination import (
    DECOMPOSITION,
    auroc,
    average_ranks,
    brier_decomposition,
    signed_gap,
)
from analyze.calibration.endpoints import ENDPOINTS, endpoint_rows, smece_interval
from analyze.calibration.floor import (
    FLOOR_SIMULATIONS,
    cell_floor_sums,
    ece_floor,
    ece_floor_from_uniforms,
    floor_of_cells,
    floor_uniforms,
)
from analyze.calibration.landmark_bootstrap import DEFINITIONS as LANDMARK_EXTRA_DEFINITIONS
from analyze.calibration.landmark_bootstrap import (
    landmark_extras,
    plateau_to_last,
    reselected_intervals,
    reselected_layers,
)
from analyze.calibration.landmarks import (
    DEFINITIONS,
    accuracy_lower_bound,
    depth_landmarks,
    layer_deltas,
    selection_half,
    window_change,
)
from analyze.calibration.metrics import (
    best_constant_chance,
    brier,
    chance_accuracy,
    flip_rate,
    metrics_from_terms,
    nll,
    per_layer_metrics,
)
from analyze.calibration.paired import (
    METRICS as PAIRED_METRICS,
)
from analyze.calibration.paired import (
    logit_metrics,
    logit_terms,
    mean_delta_ci,
    paired_deltas,
    paired_term_deltas,
)
from analyze.calibration.smooth import (
    relplot_bandwidth,
    smece,
    smece_and_bandwidth,
    smece_of_groups,
    smooth_ece,
    smooth_ece_from_coefficients,
)
from analyze.calibration.smooth_bootstrap import smece_replicates
from analyze.calibration.splits import (
    DIRECTION_STREAM,
    LANDMARK_STREAM,
    TEMPERATURE_STREAM,
    as_str,
    stratified_split,
)
from analyze.calibration.temperature import (
    TEMPERATURE_BOUNDS,
    ece_nll,
    fit_temperature,
    fit_temperatures,
    temperature_columns,
)

__all__ = [
    "BinStats",
    "DECOMPOSITION",
    "DEFINITIONS",
    "DIRECTION_STREAM",
    "ENDPOINTS",
    "FLOOR_SIMULATIONS",
    "LANDMARK_EXTRA_DEFINITIONS",
    "LANDMARK_STREAM",
    "MCE_MIN_COUNT",
    "PAIRED_METRICS",
    "TEMPERATURE_BOUNDS",
    "TEMPERATURE_STREAM",
    "TERMS",
    "accuracy_lower_bound",
    "answer_probs",
    "as_str",
    "auroc",
    "average_ranks",
    "best_constant_chance",
    "bin_index",
    "bin_stats",
    "bin_sums",
    "bootstrap_ci",
    "bootstrap_intervals",
    "bootstrap_sums",
    "brier",
    "brier_decomposition",
    "cell_floor_sums",
    "chance_accuracy",
    "confidence_and_correct",
    "depth_landmarks",
    "draw_weights",
    "ece",
    "ece_equal_mass",
    "ece_floor",
    "ece_floor_from_uniforms",
    "ece_from_bins",
    "ece_from_sums",
    "ece_nll",
    "endpoint_rows",
    "entropy",
    "fit_temperature",
    "fit_temperatures",
    "flip_rate",
    "floor_of_cells",
    "floor_uniforms",
    "kl_divergence",
    "landmark_extras",
    "layer_deltas",
    "log_softmax",
    "logit_metrics",
    "logit_terms",
    "mce",
    "mce_from_bins",
    "mce_from_sums",
    "mean_delta_ci",
    "metrics_from_terms",
    "nll",
    "paired_deltas",
    "paired_term_deltas",
    "per_example_terms",
    "per_layer_bootstrap",
    "per_layer_metrics",
    "plateau_to_last",
    "relplot_bandwidth",
    "reselected_intervals",
    "reselected_layers",
    "selection_half",
    "signed_gap",
    "smece",
    "smece_and_bandwidth",
    "smece_of_groups",
    "smece_interval",
    "smece_replicates",
    "smooth_ece",
    "smooth_ece_from_coefficients",
    "stratified_split",
    "temperature_columns",
    "window_change",
]
