"""Figures of the null-space, direction and steering commands (PNG + SVG, house style, Agg).

Each function takes the tables a command wrote and returns {name: {"png": path, "svg": path}}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from analyze.report import plot as P

Paths = dict[str, dict[str, Path]]
KIND_COLOR = {"null": P.PALETTE[1], "top": P.PALETTE[0], "random": P.GREY}
PANELS = (("ece", "ΔECE"), ("accuracy", "Δaccuracy"), ("entropy", "Δentropy (nats)"))


def _band(ax: Any, x: Any, df: pl.DataFrame, name: str, c: str, label: str) -> None:
    ax.plot(x, df[name].to_numpy(), color=c, label=label)
    lo, hi = df[f"{name}_lo"].to_numpy(), df[f"{name}_hi"].to_numpy()
    if np.isfinite(lo).any():
        ax.fill_between(x, lo, hi, color=c, alpha=0.18, lw=0)


def nullspace_figures(
    ablation: pl.DataFrame, share: pl.DataFrame, meta: dict[str, Any], out: Path
) -> Paths:
    """Null-space share by layer; Δmetrics by layer at the default k; Δmetrics by k (last)."""
    figs: Paths = {}
    k0, beta = meta["default_k"], meta["betas"][0]
    with P.style():
        fig = P.new_figure(6.0, 3.2)
        ax = fig.add_subplot()
        for kind in ("null", "top"):
            df = share.filter(pl.col("kind") == kind).sort("layer")
            x = df["layer"].to_numpy()
            ax.plot(x, df["share_mean"].to_numpy(), color=KIND_COLOR[kind], label=f"{kind}-{k0}")
            ax.fill_between(
                x,
                df["share_q10"].to_numpy(),
                df["share_q90"].to_numpy(),
                color=KIND_COLOR[kind],
                alpha=0.15,
                lw=0,
            )
        ax.axhline(float(np.sqrt(k0 / meta["hidden"])), color=P.GREY, ls="--", label="random")
        ax.set(
            xlabel=P.depth_label(False),
            ylabel="‖R_kᵀh‖ / ‖h‖",
            title="Share of the residual in a subspace",
        )
        ax.legend(loc="upper left", fontsize=7)
        figs["nullspace_share"] = P.save(fig, out, "nullspace_share")

        sel = ablation.filter((pl.col("k") == k0) & (pl.col("beta") == beta))
        fig = P.new_figure(9.0, 3.0)
        for i, (m, title) in enumerate(PANELS):
            ax = fig.add_subplot(1, 3, i + 1)
            for kind in ("null", "top", "random"):
                df = sel.filter(pl.col("kind") == kind)
                if kind == "random":
                    df = df.group_by("layer").agg(pl.col(f"d_{m}", f"d_{m}_lo", f"d_{m}_hi").mean())
                df = df.sort("layer")
                _band(ax, df["layer"].to_numpy(), df, f"d_{m}", KIND_COLOR[kind], kind)
            ax.axhline(0, color="black", lw=0.6)
            ax.set(xlabel=P.depth_label(False), title=title)
        ax.legend(loc="upper left", fontsize=7)
        fig.suptitle(f"Ablation of a k = {k0} subspace (β = {beta:g}) at each layer")
        figs["ablation_layers"] = P.save(fig, out, "ablation_layers")

        last = max(meta["layers"])
        sel = ablation.filter((pl.col("layer") == last) & (pl.col("beta") == beta))
        fig = P.new_figure(9.0, 3.0)
        for i, (m, title) in enumerate(PANELS):
            ax = fig.add_subplot(1, 3, i + 1)
            for kind in ("null", "top", "random"):
                df = (
                    sel.filter(pl.col("kind") == kind)
                    .group_by("k_fraction")
                    .agg(pl.col(f"d_{m}", f"d_{m}_lo", f"d_{m}_hi").mean())
                    .sort("k_fraction")
                )
                _band(ax, df["k_fraction"].to_numpy(), df, f"d_{m}", KIND_COLOR[kind], kind)
            ax.axhline(0, color="black", lw=0.6)
            ax.set(xscale="log", xlabel="k / d", title=title)
        ax.legend(loc="upper left", fontsize=7)
        fig.suptitle(f"Ablation at the last layer (L{last}) by subspace size")
        figs["ablation_k"] = P.save(fig, out, "ablation_k")
    return figs


def direction_figures(info: dict[str, Any], out: Path) -> Paths:
    """Explained-variance spectrum of the layer deltas; cosines between category fits."""
    figs: Paths = {}
    diag = info.get("diagnostics", {})
    with P.style():
        ev = np.asarray(diag.get("explained_variance") or [])
        if ev.size:
            fig = P.new_figure(4.5, 3.0)
            ax = fig.add_subplot()
            x = np.arange(1, ev.size + 1)
            ax.bar(x, ev, color=P.PALETTE[0], label="centred per layer")
            ax.plot(x, np.cumsum(ev), color=P.PALETTE[1], marker="o", ms=3, label="cumulative")
            pooled = np.asarray(diag.get("explained_variance_pooled") or [])
            if pooled.size:
                xs = np.arange(1, pooled.size + 1)
                ax.plot(xs, pooled, color=P.GREY, marker="s", ms=3, ls=":", label="pooled centring")
            ctrl = np.asarray((diag.get("control") or {}).get("explained_variance") or [])
            if ctrl.size:
                xs = np.arange(1, ctrl.size + 1)
                ax.plot(xs, ctrl, color=P.PALETTE[2], marker="^", ms=3, ls="--", label="control")
            ax.set(xlabel="principal component of Δ", ylabel="explained variance", ylim=(0, 1))
            ax.legend(loc="upper left", fontsize=7)
            figs["explained_variance"] = P.save(fig, out, "explained_variance")
        cc = diag.get("category_cosines") or {}
        if len(cc.get("categories", [])) > 1:
            fig = P.new_figure(4.8, 4.0)
            ax = fig.add_subplot()
            mat = np.asarray(cc["matrix"])
            im = ax.imshow(mat, vmin=-1, vmax=1, cmap="RdBu_r")
            names = cc["categories"]
            ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
            ax.set_yticks(range(len(names)), names)
            for (i, j), v in np.ndenumerate(mat):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
            ax.grid(False)
            fig.colorbar(im, ax=ax, label="cosine")
            ax.set_title("Directions fit per category")
            figs["category_cosines"] = P.save(fig, out, "category_cosines")
    return figs


def steer_figures(
    sweep: pl.DataFrame, reliability: pl.DataFrame, transfer: pl.DataFrame, out: Path
) -> Paths:
    """NLL, ECE and accuracy over α (dev and test); reliability before/after; transfer ΔECE."""
    figs: Paths = {}
    with P.style():
        fig = P.new_figure(11.0, 3.0)
        for i, m in enumerate(("nll", "ece", "accuracy")):
            ax = fig.add_subplot(1, 3, i + 1)
            for j, name in enumerate(("direction", "random-0")):
                for split, ls in (("dev", "--"), ("test", "-")):
                    df = sweep.filter((pl.col("method") == name) & (pl.col("split") == split)).sort(
                        "param"
                    )
                    if df.height:
                        ax.plot(
                            df["param"].to_numpy(),
                            df[m].to_numpy(),
                            ls=ls,
                            marker="o",
                            ms=3,
                            color=P.PALETTE[j] if name == "direction" else P.GREY,
                            label=f"{name} ({split})",
                        )
            ax.set(xlabel="α (relative to the mean residual norm)", ylabel=m)
        ax.legend(loc="upper left", fontsize=7)
        figs["alpha_sweep"] = P.save(fig, out, "alpha_sweep")

        names = reliability["method"].unique(maintain_order=True).to_list()
        fig = P.new_figure(3.2 * len(names), 3.2)
        for i, name in enumerate(names):
            df = reliability.filter(pl.col("method") == name)
            ax = fig.add_subplot(1, len(names), i + 1)
            mid = (df["bin_lo"].to_numpy() + df["bin_hi"].to_numpy()) / 2
            acc = np.nan_to_num(df["accuracy"].to_numpy())
            ax.bar(mid, acc, width=0.1, color=P.PALETTE[0], edgecolor="white", label="accuracy")
            ax.plot([0, 1], [0, 1], color=P.GREY, ls="--", lw=1)
            ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", title=name)
        fig.suptitle("Reliability on the test split")
        figs["reliability"] = P.save(fig, out, "reliability")

        if transfer.height:
            df = transfer.filter(pl.col("method").is_in(["direction", "temperature"]))
            targets = df["target"].unique(maintain_order=True).to_list()
            fig = P.new_figure(max(4.0, 1.2 * len(targets) + 2), 3.2)
            ax = fig.add_subplot()
            for j, name in enumerate(("direction", "temperature")):
                d = df.filter(pl.col("method") == name)
                x = np.arange(d.height) + (j - 0.5) * 0.35
                y = d["d_ece"].to_numpy()
                err = np.abs(np.stack([d["d_ece_lo"].to_numpy(), d["d_ece_hi"].to_numpy()]) - y)
                ax.bar(x, y, width=0.35, yerr=err, color=P.PALETTE[j], label=name, capsize=2)
            ax.set_xticks(range(len(targets)), targets, rotation=30, ha="right")
            ax.axhline(0, color="black", lw=0.6)
            ax.set(ylabel="ΔECE (95% interval)", title="Transfer, choices unchanged")
            ax.legend(loc="upper left", fontsize=7)
            figs["transfer"] = P.save(fig, out, "transfer")
    return figs
