"""Shared plotting helpers: the house style, colours, columns, landmarks and saving.

Figures are built on :class:`matplotlib.figure.Figure` directly, never through ``pyplot``, so no
global figure state or backend is touched; the style is applied with :func:`style` (an
``rc_context``), so nothing leaks into the caller's matplotlib settings.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analyze.results import AnalysisResult

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
GREY = "#777777"
LANDMARK_COLOR = "#444444"
RC: Any = {  # Any: matplotlib types rc keys as a Literal union
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.6,
    "svg.fonttype": "none",  # text stays text: smaller, searchable SVGs
    "svg.hashsalt": "layercal",  # deterministic SVG ids
}
LANDMARK_STYLE = {
    "rise_layer": ("rise", "--"),
    "plateau_layer": ("plateau", ":"),
    "peak_miscalibration_layer": ("peak ECE", "-."),
}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The house style as a context: applies to figures built and saved inside it only."""
    with mpl.rc_context(RC):
        yield


def new_figure(width: float, height: float) -> Figure:
    """A Figure with an Agg canvas attached (no pyplot, no backend switch)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def title(fig: Figure, text: str, fontsize: float = 11) -> None:
    """A left-aligned figure title wrapped to the figure's width: a long store label (model,
    dataset, a list of subjects) goes onto more lines instead of being cut at the right edge.
    Breaks after spaces and commas, measured with the figure's own renderer."""
    t = fig.suptitle(text, x=0.01, ha="left", fontsize=fontsize)
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    room = fig.get_figwidth() * fig.dpi * 0.97

    def fits(s: str) -> bool:
        t.set_text(s)
        return bool(t.get_window_extent(renderer).width <= room)

    if fits(text):
        return
    lines, line = [], ""
    for piece in re.split(r"(?<=[ ,])", text):
        if line and not fits(line + piece):
            lines.append(line.rstrip())
            line = ""
        line += piece
        while len(line) > 1 and not fits(line):  # one piece wider than the figure: cut it
            cut = next(i for i in range(len(line) - 1, 0, -1) if fits(line[:i]))
            lines.append(line[:cut])
            line = line[cut:]
    t.set_text("\n".join([*lines, line.rstrip()]))


def save(fig: Figure, out_dir: Path, name: str) -> dict[str, Path]:
    """Write ``name.png`` (150 dpi) and ``name.svg`` to ``out_dir``; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"png": out_dir / f"{name}.png", "svg": out_dir / f"{name}.svg"}
    fig.savefig(paths["png"], dpi=150, metadata={"Software": None})
    fig.set_layout_engine("none")  # keep the layout just computed: the SVG needs no second pass
    fig.savefig(paths["svg"], metadata={"Date": None})
    return paths


def color(i: int) -> str:
    """Colour of the i-th store."""
    return PALETTE[i % len(PALETTE)]


def slug(text: str, max_len: int = 60) -> str:
    """A file-name-safe version of ``text``; longer than ``max_len``: cut, plus a short hash so
    that different long texts stay different (file names have a 255-byte limit)."""
    s = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-").lower() or "store"
    if len(s) <= max_len:
        return s
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{s[: max_len - 9].rstrip('-')}-{digest}"


def per_store_name(base: str, i: int, results: list[AnalysisResult]) -> str:
    """Figure name of a per-store figure: ``base`` alone for one store, else suffixed."""
    if len(results) == 1:
        return base
    return f"{base}_{i + 1}-{slug(results[i].label)}"


def column(df: pl.DataFrame, name: str) -> np.ndarray | None:
    """Column as float64 (nulls as NaN), or None when absent or entirely missing."""
    if name not in df.columns:
        return None
    a = df[name].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    return None if np.isnan(a).all() else a


def layer_values(result: AnalysisResult) -> np.ndarray:
    """The layer index of each row of ``result.layers`` (0 = embedding output)."""
    return result.layers["layer"].to_numpy().astype(np.int64)


def depth_denominator(result: AnalysisResult) -> int:
    """Index of the model's last depth (for relative depth), also when only some layers were
    analysed: ``meta["n_depth"] - 1``, else the largest layer in the table."""
    n = result.meta.get("n_depth")
    if isinstance(n, int) and n > 1:
        return n - 1
    return max(int(layer_values(result).max()), 1)


def x_of(result: AnalysisResult, layers: Any, relative: bool) -> np.ndarray:
    """x coordinates of ``layers``: the layer index, or layer / last layer when ``relative``."""
    x = np.asarray(layers, dtype=np.float64)
    return x / depth_denominator(result) if relative else x


def chance(result: AnalysisResult) -> float | None:
    """Chance accuracy: ``landmarks["chance_accuracy"]`` (the mean over examples of 1/K_i),
    else ``meta["chance"]`` or ``1 / meta["n_choices"]``; None when unknown."""
    for v in (result.landmarks.get("chance_accuracy"), result.meta.get("chance")):
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            return float(v)
    k = result.meta.get("n_choices")
    return 1.0 / k if isinstance(k, int) and k > 0 else None


def landmark_layer(result: AnalysisResult, key: str) -> int | None:
    """A landmark layer (``rise_layer``, ...) as an int, None when not reached."""
    v = result.landmarks.get(key)
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def correction_phase(result: AnalysisResult) -> dict[str, Any] | None:
    """The correction-phase dict when it spans at least one layer, else None."""
    cp = result.landmarks.get("correction_phase")
    if not isinstance(cp, dict) or cp.get("start") is None or cp.get("end") is None:
        return None
    return cp if cp["end"] > cp["start"] else None


def mark_landmarks(
    ax: Axes,
    result: AnalysisResult,
    relative: bool,
    c: str,
    *,
    label: bool,
    slot: int | None = None,
) -> None:
    """Vertical lines at rise / plateau / peak, and the correction phase (peak, end]: shaded
    (``slot`` None, one store) or a bar along the top of the panel at height ``slot``
    (several stores, where overlapping shading would be unreadable)."""
    for key, (name, ls) in LANDMARK_STYLE.items():
        layer = landmark_layer(result, key)
        if layer is None:
            continue
        x = float(x_of(result, [layer], relative)[0])
        text = f"{name} (L{layer})" if label else None
        ax.axvline(x, color=c, ls=ls, lw=1.0, alpha=0.8, label=text)
    cp = correction_phase(result)
    if cp is None:
        return
    x0, x1 = x_of(result, [cp["start"], cp["end"]], relative)
    text = f"correction phase (L{cp['start']}–{cp['end']})" if label else None
    if slot is None:
        ax.axvspan(x0, x1, color=c, alpha=0.1, lw=0, label=text)
    else:
        y = 0.98 - 0.035 * slot
        ax.plot(
            [x0, x1],
            [y, y],
            transform=ax.get_xaxis_transform(),
            color=c,
            lw=3.5,
            alpha=0.7,
            solid_capstyle="butt",
        )


def landmark_key() -> list[Line2D]:
    """Legend entries explaining the landmark line styles (several stores)."""
    keys = [
        Line2D([], [], color=GREY, ls=ls, lw=1.0, label=name)
        for name, ls in LANDMARK_STYLE.values()
    ]
    keys.append(Line2D([], [], color=GREY, lw=3.5, alpha=0.7, label="correction phase"))
    return keys


def band(ax: Axes, x: np.ndarray, df: pl.DataFrame, name: str, c: str) -> None:
    """Shade the bootstrap interval ``name_lo``..``name_hi`` when the table has it."""
    lo, hi = column(df, f"{name}_lo"), column(df, f"{name}_hi")
    if lo is not None and hi is not None:
        ax.fill_between(x, lo, hi, color=c, alpha=0.2, lw=0)


def depth_label(relative: bool) -> str:
    return "relative depth (layer / last layer)" if relative else "layer (0 = embeddings)"


def use_relative(results: list[AnalysisResult], relative_depth: bool | None) -> bool:
    """Relative depth when asked, or (None) automatically when the layer counts differ."""
    if relative_depth is not None:
        return relative_depth
    return len({depth_denominator(r) for r in results}) > 1
