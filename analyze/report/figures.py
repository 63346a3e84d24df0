"""Figures of an analysis: metrics over depth, reliability diagrams, confidence histograms, groups.

Every ``plot_*`` function takes :class:`~analyze.results.AnalysisResult` objects and returns a
:class:`matplotlib.figure.Figure` (no pyplot state, no global style change), so notebooks can show
them; :func:`write_figures` saves the whole set as PNG and SVG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from analyze.report import plot as P
from analyze.report.findings import OPTION_MASS_FLOOR
from analyze.report.reliability import (
    grid_layers,
    plot_confidence_hists,
    plot_reliability,
    plot_reliability_grid,
)
from analyze.results import AnalysisResult

__all__ = [
    "plot_by_group",
    "plot_confidence_hists",
    "plot_confidence_over_depth",
    "plot_metrics_over_depth",
    "plot_reliability",
    "plot_reliability_grid",
    "grid_layers",
    "write_figures",
]

HEADLINE = (("accuracy", "accuracy"), ("ece", "ECE"), ("mce", "MCE"))
# option mass beside mean confidence: confidence is a softmax over the options only, and says
# little where the options hold a sliver of the full-vocabulary probability
CONFIDENCE = (
    ("mean_confidence", "mean confidence (softmax over options)"),
    ("option_mass", "option mass (vocab prob. of options)"),
    ("entropy", "entropy over options (nats)"),
    ("flip_rate", "flip rate vs last layer"),
    # a correction from a rescaling: the gap shrinks under both, AUROC moves only under a
    # correction that tells right answers from wrong ones
    ("gap", "signed gap: confidence − accuracy"),
    ("auroc", "AUROC of confidence for correctness"),
)
PER_STORE = ("reliability_grid", "reliability_final", "confidence_hist")


def _title(results: Sequence[AnalysisResult]) -> str:
    if len(results) > 1:
        return f"{len(results)} stores compared"
    n = results[0].meta.get("n_examples")
    return results[0].label + (f" (n={n})" if n else "")


def _curves(
    results: Sequence[AnalysisResult],
    panels: Sequence[tuple[str, str]],
    relative: bool,
    ncols: int,
) -> Figure:
    """One panel per (column, title); one line per store, bands, landmarks, shared legend."""
    rs = list(results)
    panels = [p for p in panels if any(P.column(r.layers, p[0]) is not None for r in rs)]
    nrows = -(-len(panels) // ncols)
    fig = P.new_figure(4.6 * ncols + 0.6, 2.3 * nrows + 1.2)
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False).ravel()
    single = len(rs) == 1
    for ax, (name, title) in zip(axes, panels):
        first = ax is axes[0]
        for i, r in enumerate(rs):
            y = P.column(r.layers, name)
            if y is None:
                continue
            c = P.color(i)
            x = P.x_of(r, P.layer_values(r), relative)
            P.band(ax, x, r.layers, name, c)
            if single:
                P.mark_landmarks(ax, r, relative, P.LANDMARK_COLOR, label=first)
            else:
                P.mark_landmarks(ax, r, relative, c, label=False, slot=i)
            ax.plot(x, y, color=c, marker="o", ms=2.5, label=r.label if first else None)
            if single and name in ("mean_confidence", "option_mass"):
                _shade_low_mass(ax, r, x)
            acc = P.column(r.layers, "accuracy")
            if name == "mean_confidence" and acc is not None:
                ax.plot(x, acc, color=c, ls="--", lw=1.0, alpha=0.7)
            if name == "ece":
                _smooth_and_floor(ax, r, x, c, label=first and i == 0)
        k = P.chance(rs[0])
        if name in ("accuracy", "mean_confidence") and k is not None:
            ax.axhline(
                k,
                color=P.GREY,
                ls=(0, (1, 2)),
                lw=1.0,
                label=f"chance (mean 1/K) = {k:.0%}" if first else None,
            )
        dashed = name == "mean_confidence" and any(
            P.column(r.layers, "accuracy") is not None for r in rs
        )
        if name == "ece" and any(P.column(r.layers, "smece") is not None for r in rs):
            title = f"{title}; dashed: smooth ECE; dotted: ECE floor"
        ax.set_title(f"{title}; dashed: accuracy" if dashed else title, loc="left")
        if name in ("accuracy", "mean_confidence", "option_mass", "flip_rate", "ece", "mce"):
            ax.set_ylim(bottom=0)
        if name == "gap":
            ax.axhline(0, color=P.GREY, lw=0.8)
        if name == "auroc":
            ax.axhline(0.5, color=P.GREY, lw=0.8, ls=(0, (1, 2)))
        if not single:  # headroom for the correction-phase bars along the top
            lo, hi = ax.get_ylim()
            ax.set_ylim(lo, hi + (hi - lo) * 0.04 * (len(rs) + 1))
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    for ax in axes[-ncols:]:
        ax.set_xlabel(P.depth_label(relative))
        ax.xaxis.set_tick_params(labelbottom=True)
    handles, labels = axes[0].get_legend_handles_labels()
    extra: list[Artist] = [] if single else list(P.landmark_key())
    if any(P.column(r.layers, f"{p}_lo") is not None for r in rs for p, _ in panels):
        extra.append(Patch(color=P.GREY, alpha=0.3, lw=0, label="bootstrap 95% interval"))
    handles += extra
    labels += [str(h.get_label()) for h in extra]
    # below the panels: a legend at the side would squeeze the narrow one-column figure
    fig.legend(handles, labels, loc="outside lower center", frameon=False, ncol=ncols + 1)
    P.title(fig, _title(rs))
    return fig


def _smooth_and_floor(ax: Axes, r: AnalysisResult, x: np.ndarray, c: str, label: bool) -> None:
    """In the ECE panel: smooth ECE (dashed, with its bootstrap band) and the ECE floor (dotted:
    the ECE a perfectly calibrated predictor shows at this sample size)."""
    sm, floor = P.column(r.layers, "smece"), P.column(r.layers, "ece_floor")
    if sm is not None:
        P.band(ax, x, r.layers, "smece", c)
        ax.plot(x, sm, color=c, ls="--", lw=1.2, label="smooth ECE (smECE)" if label else None)
    if floor is not None:
        ax.plot(
            x,
            floor,
            color=c,
            ls=":",
            lw=1.2,
            label="ECE floor (calibrated, same n)" if label else None,
        )


def _shade_low_mass(ax: Axes, r: AnalysisResult, x: np.ndarray) -> None:
    """Hatched bands over the layers whose mean option mass is below OPTION_MASS_FLOOR (hatched,
    not filled: a filled band is the correction phase)."""
    mass = P.column(r.layers, "option_mass")
    if mass is None or not (mass < OPTION_MASS_FLOOR).any():
        return
    step = float(np.min(np.diff(x))) if x.size > 1 else 1.0
    label: str | None = "option mass < 1%: lens reads tokens the model does not predict"
    for i in np.flatnonzero(mass < OPTION_MASS_FLOOR):
        ax.axvspan(
            x[i] - step / 2,
            x[i] + step / 2,
            facecolor="none",
            edgecolor=P.GREY,
            hatch="////",
            alpha=0.35,
            lw=0,
            label=label,
        )
        label = None  # one legend entry


def plot_metrics_over_depth(
    results: Sequence[AnalysisResult], *, relative_depth: bool | None = None
) -> Figure:
    """Accuracy, ECE and MCE over depth (the paper's figure 1), one line per store.

    Chance (mean 1/K) dotted; rise / plateau / peak-ECE layers as vertical lines and the correction
    phase shaded (one store), bootstrap intervals as bands. ``relative_depth``: x = layer / last
    layer; None chooses it when the stores' layer counts differ."""
    with P.style():
        return _curves(results, HEADLINE, P.use_relative(list(results), relative_depth), ncols=1)


def plot_confidence_over_depth(
    results: Sequence[AnalysisResult], *, relative_depth: bool | None = None
) -> Figure:
    """Mean confidence (softmax over the answer options; accuracy dashed) with option mass beside
    it, then entropy and flip rate, then the signed gap and AUROC (a rescaling moves the gap,
    only a correction moves AUROC) over depth. One store: layers whose mean option mass is under
    1% are shaded in the confidence and option-mass panels."""
    with P.style():
        return _curves(results, CONFIDENCE, P.use_relative(list(results), relative_depth), ncols=2)


def plot_by_group(result: AnalysisResult, group_by: str = "category") -> Figure | None:
    """Accuracy and ECE over layers, one line per group (``category`` or ``subject``).

    The all-examples curve is drawn in black for reference. None when ``result.by_group`` has no
    rows for ``group_by``."""
    bg = result.by_group
    if bg.is_empty() or "group_by" not in bg.columns:
        return None
    rows = bg.filter(bg["group_by"] == group_by).sort(["group", "layer"])
    if rows.is_empty():
        return None
    groups = rows["group"].unique(maintain_order=True).to_list()
    many = len(groups) > len(P.PALETTE)
    with P.style():
        fig = P.new_figure(10.5 if many else 9.5, 3.4 if len(groups) < 25 else 5.0)
        axes = fig.subplots(1, 2, sharex=True)
        cmap = mpl.colormaps["tab20"]
        for ax, (name, title) in zip(axes, HEADLINE[:2]):
            for j, g in enumerate(groups):
                sub = rows.filter(rows["group"] == g)
                c = cmap(j % 20) if many else P.color(j)
                n = int(sub["n"].to_numpy().max()) if "n" in sub.columns else None
                label = f"{g} (n={n})" if n is not None else str(g)
                ax.plot(
                    sub["layer"].to_numpy(),
                    sub[name].to_numpy(),
                    color=c,
                    lw=1.0 if many else 1.4,
                    label=label if ax is axes[0] else None,
                )
            y = P.column(result.layers, name)
            if y is not None:
                ax.plot(
                    P.layer_values(result),
                    y,
                    color="black",
                    lw=2.0,
                    label="all examples" if ax is axes[0] else None,
                )
            k = P.chance(result)
            if name == "accuracy" and k is not None:
                ax.axhline(k, color=P.GREY, ls=(0, (1, 2)), lw=1.0)
            ax.set_title(f"{title} by {group_by}", loc="left")
            ax.set_xlabel(P.depth_label(False))
            ax.set_ylim(bottom=0)
        ncol = 1 if len(groups) <= 20 else 2
        fig.legend(loc="outside right upper", frameon=False, ncol=ncol, fontsize=7 if many else 8)
        P.title(fig, f"{result.label}: by {group_by}")
    return fig


def write_figures(
    results: Sequence[AnalysisResult],
    out_dir: Path,
    *,
    relative_depth: bool | None = None,
    n_grid: int = 12,
) -> dict[str, dict[str, Path]]:
    """Write every figure of ``results`` to ``out_dir`` as PNG and SVG.

    Returns figure name -> {"png": path, "svg": path}. Names: ``metrics_over_depth`` and
    ``confidence_over_depth`` (all stores overlaid); ``reliability_grid`` (``n_grid`` layers),
    ``reliability_final``, ``confidence_hist``, ``by_category`` / ``by_subject`` (when present)
    per store, suffixed ``_<i>-<label>`` when there are several stores."""
    rs = list(results)
    if not rs:
        raise ValueError("write_figures needs at least one AnalysisResult")
    out = Path(out_dir)
    written: dict[str, dict[str, Path]] = {}

    def emit(name: str, fig: Figure | None) -> None:
        if fig is None:
            return
        with P.style():
            written[name] = P.save(fig, out, name)

    emit("metrics_over_depth", plot_metrics_over_depth(rs, relative_depth=relative_depth))
    emit("confidence_over_depth", plot_confidence_over_depth(rs, relative_depth=relative_depth))
    for i, r in enumerate(rs):
        layers = grid_layers(r, n_grid)
        emit(P.per_store_name("reliability_grid", i, rs), plot_reliability_grid(r, layers))
        last = int(P.layer_values(r)[-1])
        emit(P.per_store_name("reliability_final", i, rs), plot_reliability(r, last))
        emit(P.per_store_name("confidence_hist", i, rs), plot_confidence_hists(r, layers))
        kinds = (
            r.by_group["group_by"].unique().to_list() if "group_by" in r.by_group.columns else []
        )
        for g in sorted(map(str, kinds)):
            emit(P.per_store_name(f"by_{P.slug(g)}", i, rs), plot_by_group(r, g))
    return written
