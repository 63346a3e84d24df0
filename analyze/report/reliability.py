"""Reliability diagrams and confidence histograms from ``AnalysisResult.reliability``.

``reliability["count"|"sum_conf"|"sum_correct"]`` are (L, M) per-bin sums over equal-width bins
on [0, 1]; ``reliability["conf_hist"]`` is an (L, B) histogram of confidence on [0, 1]. Row i
belongs to ``result.layers`` row i.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analyze.report import plot as P
from analyze.results import AnalysisResult

ACC_COLOR, GAP_COLOR, COUNT_COLOR = "#0072B2", "#D55E00", "#999999"
_TAGS = (
    ("rise_layer", "rise"),
    ("plateau_layer", "plateau"),
    ("peak_miscalibration_layer", "peak"),
)


def grid_layers(result: AnalysisResult, k: int = 12) -> list[int]:
    """About ``k`` evenly spaced layers including the first and the last, with the rise and
    peak-ECE landmarks swapped in for their nearest neighbours. Returns layer values."""
    layers = P.layer_values(result)
    idx = np.unique(np.linspace(0, len(layers) - 1, max(1, min(k, len(layers)))).round())
    chosen = [int(layers[int(i)]) for i in idx]
    protected = {chosen[0], chosen[-1]}  # never drop the first or the last layer
    for key in ("rise_layer", "peak_miscalibration_layer"):
        mark = P.landmark_layer(result, key)
        if mark is None or mark in chosen or mark not in layers:
            continue
        free = [c for c in chosen if c not in protected]
        if free:
            chosen.remove(min(free, key=lambda c: abs(c - mark)))
        chosen.append(mark)
        protected.add(mark)
    return sorted(chosen)


def _row(result: AnalysisResult, layer: int) -> int:
    rows = np.flatnonzero(P.layer_values(result) == layer)
    if rows.size == 0:
        raise ValueError(f"layer {layer} is not in this result (layers {P.layer_values(result)})")
    return int(rows[0])


def _tag(result: AnalysisResult, layer: int) -> str:
    tags = [name for key, name in _TAGS if P.landmark_layer(result, key) == layer]
    return f" ({', '.join(tags)})" if tags else ""


def _ece_of(result: AnalysisResult, row: int) -> float:
    """The table's ECE for the row; from the bins when the table lacks it."""
    ece = P.column(result.layers, "ece")
    if ece is not None and np.isfinite(ece[row]):
        return float(ece[row])
    rel = result.reliability
    n = max(float(rel["count"][row].sum()), 1.0)
    return float(np.abs(rel["sum_correct"][row] - rel["sum_conf"][row]).sum() / n)


def _draw(ax: Axes, ax_n: Axes, result: AnalysisResult, layer: int, *, legend: bool) -> None:
    """Accuracy bars per bin against the diagonal, the gap to confidence, counts below."""
    rel, row = result.reliability, _row(result, layer)
    count = np.asarray(rel["count"][row], dtype=np.float64)
    m = count.size
    left = np.linspace(0.0, 1.0, m + 1)[:-1]
    full = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(full, rel["sum_correct"][row] / count, np.nan)
        conf = np.where(full, rel["sum_conf"][row] / count, np.nan)
    w = 1.0 / m
    ax.bar(
        left[full],
        acc[full],
        width=w,
        align="edge",
        color=ACC_COLOR,
        alpha=0.85,
        edgecolor="white",
        lw=0.5,
        label="accuracy in bin",
    )
    # hatched, unfilled: readable both above a bar (overconfident) and over it (underconfident)
    ax.bar(
        left[full],
        (conf - acc)[full],
        bottom=acc[full],
        width=w,
        align="edge",
        facecolor="none",
        edgecolor=GAP_COLOR,
        hatch="////",
        lw=0.6,
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], color="black", ls="--", lw=0.9, label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1))
    ax.set_aspect("auto")
    title = f"layer {layer}{_tag(result, layer)} · ECE {_ece_of(result, row):.3f}"
    ax.set_title(title, loc="left")
    ax.tick_params(labelbottom=False)
    share = count / max(count.sum(), 1.0)
    ax_n.bar(left, share, width=w, align="edge", color=COUNT_COLOR, edgecolor="white", lw=0.5)
    ax_n.set(xlim=(0, 1), ylim=(0, max(float(share.max()), 0.05) * 1.1))
    ax_n.grid(False)
    ax_n.tick_params(labelsize=7)
    ax_n.locator_params(axis="y", nbins=2)
    if legend:
        ax.legend(loc="upper left", frameon=False, fontsize=7)


def plot_reliability_grid(
    result: AnalysisResult, layers: Sequence[int] | None = None, *, ncols: int = 4
) -> Figure:
    """Small multiples: a reliability diagram per layer (default :func:`grid_layers`), each
    with the share of examples per confidence bin underneath."""
    chosen = list(layers) if layers is not None else grid_layers(result)
    ncols = max(1, min(ncols, len(chosen)))
    nrows = -(-len(chosen) // ncols)
    with P.style():
        fig = P.new_figure(2.6 * ncols + 0.4, 2.9 * nrows + 0.6)
        outer = fig.add_gridspec(nrows, ncols)
        for j, layer in enumerate(chosen):
            r, c = divmod(j, ncols)
            inner = outer[r, c].subgridspec(2, 1, height_ratios=(3, 1), hspace=0.05)
            ax = fig.add_subplot(inner[0])
            ax_n = fig.add_subplot(inner[1], sharex=ax)
            _draw(ax, ax_n, result, layer, legend=j == 0)
            if c == 0:
                ax.set_ylabel("accuracy")
                ax_n.set_ylabel("share")
            if r == nrows - 1 or j + ncols >= len(chosen):
                ax_n.set_xlabel("confidence")
        P.title(fig, f"{result.label}: reliability over depth")
    return fig


def plot_reliability(result: AnalysisResult, layer: int | None = None) -> Figure:
    """One reliability diagram (default: the last layer), with bin shares underneath."""
    layer = int(P.layer_values(result)[-1]) if layer is None else int(layer)
    with P.style():
        fig = P.new_figure(4.6, 5.0)
        gs = fig.add_gridspec(2, 1, height_ratios=(3, 1))
        ax = fig.add_subplot(gs[0])
        ax_n = fig.add_subplot(gs[1], sharex=ax)
        _draw(ax, ax_n, result, layer, legend=True)
        ax.set_ylabel("accuracy")
        ax_n.set_ylabel("share of examples")
        ax_n.set_xlabel("confidence (max option probability)")
        n = int(np.asarray(result.reliability["count"][_row(result, layer)]).sum())
        P.title(fig, f"{result.label} (n={n})")
    return fig


def plot_confidence_hists(
    result: AnalysisResult, layers: Sequence[int] | None = None, *, ncols: int = 4
) -> Figure:
    """Histogram of confidence per layer, with the layer's accuracy and mean confidence marked."""
    chosen = list(layers) if layers is not None else grid_layers(result)
    hist = np.asarray(result.reliability["conf_hist"], dtype=np.float64)
    acc, conf = P.column(result.layers, "accuracy"), P.column(result.layers, "mean_confidence")
    k = P.chance(result)
    ncols = max(1, min(ncols, len(chosen)))
    nrows = -(-len(chosen) // ncols)
    with P.style():
        fig = P.new_figure(2.6 * ncols + 0.4, 1.9 * nrows + 0.6)
        axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False).ravel()
        edges = np.linspace(0.0, 1.0, hist.shape[1] + 1)
        for j, layer in enumerate(chosen):
            ax, row = axes[j], _row(result, layer)
            share = hist[row] / max(hist[row].sum(), 1.0)
            ax.bar(
                edges[:-1],
                share,
                width=np.diff(edges),
                align="edge",
                color=COUNT_COLOR,
                edgecolor="white",
                lw=0.4,
            )
            first = j == 0
            if conf is not None:
                ax.axvline(
                    conf[row], color=GAP_COLOR, lw=1.2, label="mean confidence" if first else None
                )
            if acc is not None:
                ax.axvline(
                    acc[row], color=ACC_COLOR, lw=1.2, ls="--", label="accuracy" if first else None
                )
            if k is not None:
                ax.axvline(k, color="black", lw=0.8, ls=":", label="chance" if first else None)
            ax.set_title(f"layer {layer}{_tag(result, layer)}", loc="left")
            ax.set_xlim(0, 1)
            if j % ncols == 0:
                ax.set_ylabel("share")
        for ax in axes[len(chosen) :]:
            ax.set_visible(False)
        for ax in axes[-ncols:]:
            ax.set_xlabel("confidence")
            ax.xaxis.set_tick_params(labelbottom=True)
        fig.legend(loc="outside right upper", frameon=False)
        P.title(fig, f"{result.label}: confidence histograms")
    return fig
