"""analyze/report/figures.py: the figures of an analysis (PNG + SVG), on synthetic
AnalysisResults."""

from __future__ import annotations

import copy

import matplotlib as mpl
import matplotlib.image as mpimg
import polars as pl

from analyze.report.figures import (
    plot_confidence_over_depth,
    plot_metrics_over_depth,
    plot_reliability,
    write_figures,
)


def test_write_figures_png_and_svg(tmp_path, flat):
    figs = write_figures([flat], tmp_path / "figs", n_grid=4)
    expected = {"metrics_over_depth", "confidence_over_depth", "reliability_grid"}
    expected |= {"reliability_final", "confidence_hist", "by_category"}
    assert set(figs) == expected
    for name, paths in figs.items():
        assert set(paths) == {"png", "svg"}
        assert paths["png"] == tmp_path / "figs" / f"{name}.png"
        img = mpimg.imread(paths["png"])
        assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 300, name
        assert img[..., :3].std() > 0.05, f"{name} is blank"
        svg = paths["svg"].read_text()
        assert svg.startswith("<?xml") and "<svg" in svg and len(svg) > 10_000


def test_figures_leave_global_style_alone(rising):
    before = dict(mpl.rcParams)
    plot_metrics_over_depth([rising])
    plot_reliability(rising)
    assert dict(mpl.rcParams) == before


def test_option_mass_is_beside_mean_confidence(rising):
    r = copy.deepcopy(rising)
    r.layers = r.layers.with_columns(
        option_mass=pl.when(pl.col("layer") < 3).then(0.001).otherwise(pl.col("option_mass"))
    )
    fig = plot_confidence_over_depth([r])
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_visible()]
    assert titles[0].startswith("mean confidence") and titles[1].startswith("option mass")
    shaded = [p for p in fig.axes[0].patches if str(p.get_label()).startswith("option mass < 1%")]
    assert len(shaded) == 1  # one labelled band (layers 0-2); the others carry no label
    plain = plot_confidence_over_depth([rising])  # option mass >= 0.02: nothing shaded
    assert len(fig.axes[0].patches) - len(plain.axes[0].patches) == 3  # layers 0, 1, 2
