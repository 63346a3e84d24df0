"""Figures of ``layercal neurons`` (PNG + SVG, house style, Agg): which blocks write into the
null space, and the last block's neurons by output norm and logit variance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from matplotlib.ticker import MaxNLocator

from analyze.report import plot as P

Paths = dict[str, dict[str, Path]]


def _band(ax: Any, x: Any, df: pl.DataFrame, name: str, c: str, label: str) -> None:
    ax.plot(x, df[name].to_numpy(), color=c, marker="o", ms=2.5, label=label)
    lo, hi = df[f"{name}_lo"].to_numpy(), df[f"{name}_hi"].to_numpy()
    if np.isfinite(lo).any():
        ax.fill_between(x, lo, hi, color=c, alpha=0.2, lw=0)


def blocks_figure(blocks: pl.DataFrame, meta: dict[str, Any], out: Path) -> Paths:
    """Null-space share and contribution of each block's write; the last layer's ΔECE and
    Δconfidence without that block's null-space write."""
    x = blocks["layer"].to_numpy()
    k = meta["k"]
    with P.style():
        fig = P.new_figure(9.0, 3.2)
        ax = fig.add_subplot(1, 2, 1)
        ax.plot(
            x,
            blocks["null_share"].to_numpy(),
            color=P.PALETTE[1],
            marker="o",
            ms=2.5,
            label="‖BᵀΔ‖/‖Δ‖ (share of the write)",
        )
        ax.plot(
            x,
            blocks["null_contribution"].to_numpy(),
            color=P.PALETTE[0],
            marker="s",
            ms=2.5,
            label="part of the last residual's N_k content",
        )
        ax.axhline(float(np.sqrt(k / meta["hidden"])), color=P.GREY, ls="--", label="random")
        ax.axhline(0, color="black", lw=0.6)
        ax.set(xlabel="block (layer it writes)", title=f"Null-space writes (N_{k})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="upper left", fontsize=7)
        ax = fig.add_subplot(1, 2, 2)
        _band(ax, x, blocks, "d_ece", P.PALETTE[1], "ΔECE")
        _band(ax, x, blocks, "d_confidence", P.PALETTE[0], "Δconfidence")
        if np.isfinite(blocks["random_d_ece"].to_numpy()).any():
            ax.plot(
                x,
                blocks["random_d_ece"].to_numpy(),
                color=P.GREY,
                ls=":",
                label="ΔECE, random subspace",
            )
        ax.axhline(0, color="black", lw=0.6)
        ax.set(
            xlabel="block (layer it writes)",
            title=f"Last layer (L{meta['last_layer']}) without the block's N_k write",
        )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="best", fontsize=7)
        return {"block_writes": P.save(fig, out, "block_writes")}


def effect_order(neurons: pl.DataFrame) -> pl.DataFrame:
    """The candidates by rank, each followed by its matched controls."""
    sel = neurons.filter(pl.col("role").is_in(["candidate", "control"]))
    rank = dict(zip(sel["neuron"].to_list(), sel["candidate_rank"].to_list()))
    group = [
        r if r is not None else rank.get(c)
        for r, c in zip(sel["candidate_rank"].to_list(), sel["control_of"].to_list())
    ]
    first = [0 if role == "candidate" else 1 for role in sel["role"].to_list()]
    return (
        sel.with_columns(pl.Series("_g", group), pl.Series("_f", first))
        .sort(["_g", "_f", "neuron"])
        .drop("_g", "_f")
    )


def neuron_figures(neurons: pl.DataFrame, meta: dict[str, Any], out: Path) -> Paths:
    """Output norm against logit variance, coloured by null-space share (candidates ringed);
    ΔECE of the candidates and their matched controls, total and direct."""
    figs: Paths = {}
    with P.style():
        fig = P.new_figure(5.6, 4.0)
        ax = fig.add_subplot()
        y = np.maximum(neurons["logit_var_unit"].to_numpy(), 1e-12)
        pts = ax.scatter(
            neurons["norm"].to_numpy(),
            y,
            c=neurons["null_share"].to_numpy(),
            cmap="viridis",
            s=6,
            lw=0,
            vmin=0,
            vmax=1,
        )
        fig.colorbar(pts, ax=ax, label=f"share of ‖w_out‖ in N_{meta['k']}")
        cand = neurons.filter(pl.col("role") == "candidate")
        cy = np.maximum(cand["logit_var_unit"].to_numpy(), 1e-12)
        ax.scatter(
            cand["norm"].to_numpy(),
            cy,
            s=40,
            facecolors="none",
            edgecolors=P.PALETTE[1],
            lw=1.2,
            label="candidates",
        )
        for nid, xx, yy in zip(cand["neuron"].to_list(), cand["norm"].to_list(), cy):
            ax.annotate(str(nid), (xx, yy), xytext=(3, 3), textcoords="offset points", fontsize=7)
        ax.set(
            yscale="log",
            xlabel="‖w_out‖",
            ylabel="Var over vocab of W̃·w_out / ‖w_out‖²",
            title=f"Last-block neurons ({meta['neurons']})",
        )
        ax.legend(loc="upper right", fontsize=7)
        figs["neuron_scan"] = P.save(fig, out, "neuron_scan")

        sel = effect_order(neurons)
        if sel.height:
            fig = P.new_figure(max(4.0, 0.22 * sel.height + 1.5), 3.2)
            ax = fig.add_subplot()
            x = np.arange(sel.height)
            colors = [P.PALETTE[1] if r == "candidate" else P.GREY for r in sel["role"]]
            d, lo, hi = (sel[c].to_numpy() for c in ("d_ece", "d_ece_lo", "d_ece_hi"))
            ax.vlines(x, lo, hi, colors=colors, lw=1)
            ax.scatter(x, d, c=colors, s=14, label="total (norm recomputed)")
            ax.scatter(
                x,
                sel["direct_d_ece"].to_numpy(),
                marker="x",
                c=colors,
                s=14,
                label="direct (scale frozen)",
            )
            ax.axhline(0, color="black", lw=0.6)
            ax.set_xticks(x, [str(v) for v in sel["neuron"].to_list()], rotation=90, fontsize=6)
            ax.set(
                xlabel="neuron (orange: candidate; grey: its matched controls after it)",
                ylabel="ΔECE at the last layer",
                title="Mean-ablating one neuron",
            )
            ax.legend(loc="best", fontsize=7)
            figs["neuron_effects"] = P.save(fig, out, "neuron_effects")
    return figs
