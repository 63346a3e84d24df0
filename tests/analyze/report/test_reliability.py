"""analyze/report/reliability.py: reliability diagrams and the depths of the grid."""

from __future__ import annotations

import numpy as np
from matplotlib.patches import Rectangle

from analyze.report.figures import (
    grid_layers,
    plot_reliability,
)


def test_reliability_bars_are_bin_accuracies(rising):
    fig = plot_reliability(rising)
    rel, last = rising.reliability, -1
    full = rel["count"][last] > 0
    acc = rel["sum_correct"][last][full] / rel["count"][last][full]
    bars = fig.axes[0].patches[: int(full.sum())]  # accuracy bars come first, gaps after
    np.testing.assert_allclose([b.get_height() for b in bars if isinstance(b, Rectangle)], acc)
    assert f"ECE {rising.layers['ece'][-1]:.3f}" in fig.axes[0].get_title(loc="left")


def test_grid_layers_span_depth_and_include_landmarks(rising):
    chosen = grid_layers(rising, 6)
    lm = rising.landmarks
    assert chosen[0] == 0 and chosen[-1] == 19 and len(chosen) == 6
    assert lm["rise_layer"] in chosen and lm["peak_miscalibration_layer"] in chosen
    assert chosen == sorted(set(chosen))
