"""Lenses side by side: what ``layercal analyze --lens A --lens B ...`` adds to the report.

One figure, ``lenses_over_depth``: accuracy, ECE, NLL, mean confidence and KL to the final
answer distribution over depth, one curve per lens (bootstrap bands where the table has them);
and one table: per lens, the fixed-depth contrast from the plateau to the last layer
(``landmarks["lens_plateau_to_last"]``, :mod:`analyze.lens.fitted.compare`) with the criteria of
docs/lenses.md. A single result read through a fitted lens gets the table alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from analyze.report import plot as P
from analyze.report.render import Block, Heading, Image, Para, Table
from analyze.results import AnalysisResult

PANELS = (
    ("accuracy", "accuracy"),
    ("ece", "ECE"),
    ("nll", "NLL"),
    ("mean_confidence", "mean confidence (options)"),
    ("kl_to_last", "KL(last || layer) over the options"),
)
CAPTION = (
    "The same store read through each lens: accuracy, ECE, NLL, mean confidence and the KL from "
    "the last layer's answer distribution over depth, one curve per lens (bands: bootstrap 95% "
    "intervals). At the last depth every lens is the identity."
)
CRITERIA = (
    "Reading the table (docs/lenses.md): the correction phase is an artefact of the logit lens "
    "if, under the shortcut and tuned lenses, the plateau is about as calibrated as the last "
    "layer (the ΔECE interval inside ±0.05: 'calibrated like last') while agreeing with the "
    "final answer; it is the model's if those lenses stay overconfident at the plateau although "
    "they reproduce the final argmax. A lens that does not reproduce the final answer at the "
    "plateau (low agreement, large KL) decides nothing: a failed linear fit does not show that "
    "the information is absent."
)


def lens_name(r: AnalysisResult) -> str | None:
    """The lens a result was read through (None: an unnamed logit-lens analysis)."""
    rec = r.landmarks.get("lens")
    return str(rec.get("name")) if isinstance(rec, dict) else None


def _fmt(x: Any, digits: int = 3) -> str:
    return "—" if x is None else f"{float(x):.{digits}f}"


def plateau_row(r: AnalysisResult) -> list[str]:
    """One lens's row of the table."""
    rec = r.landmarks.get("lens") or {}
    how = rec.get("kind", "logit")
    if rec.get("transfer"):
        how += f", transferred from {rec.get('dataset')}"
    pt = r.landmarks.get("lens_plateau_to_last")
    if not isinstance(pt, dict):
        return [r.label, how, *["—"] * 7]
    delta = f"{pt['delta_ece']:+.3f} [{pt['delta_ece_lo']:+.3f}, {pt['delta_ece_hi']:+.3f}]"
    return [
        r.label,
        how,
        f"{pt['start']} → {pt['end']}",
        f"{_fmt(pt['ece_start'])} → {_fmt(pt['ece_end'])}",
        delta + (" (like last)" if pt["calibrated_like_last"] else ""),
        _fmt(pt["agreement_with_last_start"]),
        f"{_fmt(pt['mean_confidence_start'])} → {_fmt(pt['mean_confidence_end'])}",
        f"{_fmt(pt['entropy_start'])} → {_fmt(pt['entropy_end'])}",
        _fmt(pt["kl_to_last_start"]),
    ]


def plot_lenses_over_depth(results: Sequence[AnalysisResult]) -> Figure:
    """Five panels over depth, one line per result (lens)."""
    rs = list(results)
    with P.style():
        fig = P.new_figure(10.5, 5.6)
        axes = fig.subplots(2, 3, sharex=True).ravel()
        for ax, (name, title) in zip(axes, PANELS):
            for i, r in enumerate(rs):
                y = P.column(r.layers, name)
                if y is None:
                    continue
                x = P.layer_values(r).astype(float)
                P.band(ax, x, r.layers, name, P.color(i))
                ax.plot(x, y, color=P.color(i), marker="o", ms=2.5, label=r.label)
            ax.set_title(title, loc="left")
            ax.set_ylim(bottom=0)
        axes[-1].set_visible(False)
        for ax in axes[3:5]:
            ax.set_xlabel(P.depth_label(False))
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", frameon=False, ncol=2)
        fig.suptitle("Lenses side by side", x=0.01, ha="left", fontsize=11)
    return fig


def lens_blocks(results: Sequence[AnalysisResult], fig_dir: Path) -> list[Block]:
    """The report's lens section: nothing unless some result names its lens."""
    rs = [r for r in results if lens_name(r) is not None]
    if not rs:
        return []
    header = ["read through", "lens", "plateau → last", "ECE", "ΔECE [95% CI]"]
    header += ["agreement at plateau", "confidence", "entropy", "KL at plateau"]
    blocks: list[Block] = [Heading(2, "Lenses"), Para(CRITERIA, css="muted")]
    if len(rs) > 1:
        with P.style():
            paths = P.save(plot_lenses_over_depth(rs), fig_dir, "lenses_over_depth")
        blocks.append(Image(paths["png"], CAPTION, paths["svg"]))
    blocks.append(Table(header, [plateau_row(r) for r in rs]))
    return blocks
