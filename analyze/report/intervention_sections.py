"""The report sections of the null-space and direction commands, as document blocks (the
steering section is :mod:`analyze.report.steer_section`).

Each command renders its section into ``section.md`` (Markdown starting at heading level 2,
figures linked relative to the section's folder); ``layercal analyze`` builds the same blocks
again from the section folder's tables (:mod:`analyze.report.sections`), so a section is never
parsed back from Markdown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from analyze.report.numbers import num, span, with_ci
from analyze.report.render import Block, Bullets, Heading, Image, Para, Table

Paths = dict[str, dict[str, Path]]  # figure name -> {"png": path, "svg": path}


def images(figs: Paths, captions: dict[str, str]) -> list[Block]:
    """Image blocks of the figures in ``captions`` that were written."""
    return [
        Image(figs[name]["png"], caption, figs[name].get("svg"))
        for name, caption in captions.items()
        if name in figs
    ]


def nullspace_blocks(
    ablation: pl.DataFrame, share: pl.DataFrame, meta: dict[str, Any], figs: Paths
) -> list[Block]:
    k0, beta, last = meta["default_k"], meta["betas"][0], max(meta["layers"])
    sh = {r["kind"]: r for r in share.filter(pl.col("layer") == last).iter_rows(named=True)}
    at_last = ablation.filter(
        (pl.col("layer") == last) & (pl.col("k") == k0) & (pl.col("beta") == beta)
    )
    rows = [
        [
            r["condition"],
            with_ci(r, "d_ece", signed=True),
            with_ci(r, "d_accuracy", signed=True),
            with_ci(r, "d_entropy", signed=True),
            num(r["removed"], 3),
            num(r["logit_change"], 3),
            num(r["logit_gain"], 3),
            num(r["norm_ratio"], 3),
            with_ci(r, "option_mass_delta", signed=True),
        ]
        for r in at_last.iter_rows(named=True)
    ]
    by_k = []
    for k in meta["ks"]:
        sel = ablation.filter(
            (pl.col("layer") == last) & (pl.col("k") == k) & (pl.col("beta") == beta)
        )
        cell = {
            kind: sel.filter(pl.col("kind") == kind)["d_ece"].mean()
            for kind in ("null", "top", "random")
        }
        by_k.append(
            [
                str(k),
                num(k / meta["hidden"], 3),
                *(num(cell[x], 3) for x in ("null", "random", "top")),
            ]
        )
    smallest = ", ".join(num(s, spec=".3g") for s in meta["singular_values_smallest"][:k0])
    excluded = (
        " other than 1/√d (LayerNorm subtracts the mean of h, so that direction is exactly null "
        "and never reaches the logits: it is left out)"
        if meta.get("exact_null_excluded")
        else ""
    )
    header = ["condition", "ΔECE", "Δaccuracy", "Δentropy", "removed", "logit change"]
    header += ["logit gain", "norm ratio", "Δoption mass"]
    captions = {
        "nullspace_share": "Share of the residual in N_k and the top-k subspace by layer",
        "ablation_layers": f"Metric changes by layer, k = {k0}",
        "ablation_k": f"Metric changes at L{last} by k",
    }
    return [
        Heading(2, "Null space of the unembedding"),
        Para(
            f"SVD of the effective unembedding W̃ (hidden size {meta['hidden']}); N_k = the k "
            f"right singular vectors of smallest σ{excluded}, default k = {k0} (σ = {smallest}). Ablation "
            f"h ← h + (β − 1)·B·Bᵀh with β = {num(beta, spec='g')} on {meta['n_examples']} examples; "
            f"intervals: paired bootstrap ({meta['n_boot']} resamples), 95%."
        ),
        Para(
            f"At the last layer (L{last}) a share {num(sh['null']['share_mean'], 3)} of the "
            f"residual's norm lies in N_{k0} (top-{k0}: {num(sh['top']['share_mean'], 3)}; a random "
            f"{k0}-dim subspace: {num(sh['null']['random_expected'], 3)})."
        ),
        Para(
            f"Changes at L{last}, k = {k0}. *removed*: mean ‖h′ − h‖/‖h‖; *logit change*: mean "
            "‖W̃(h′ − h)‖/‖W̃h‖ over the whole vocabulary before the final norm; *logit gain*: "
            "their ratio (below 1: the subspace moves the norm more than the logits); *norm "
            "ratio*: mean ‖h′‖/‖h‖."
        ),
        Table(header, rows),
        Para(f"ΔECE at L{last} by subspace size (random: mean over seeds):"),
        Table(["k", "k/d", "null", "random", "top"], by_k),
        *images(figs, captions),
    ]


def _spectrum_bullets(diag: dict[str, Any]) -> list[str]:
    ev, pooled = diag.get("explained_variance") or [], diag.get("explained_variance_pooled") or []
    if not ev:
        return []
    text = (
        f"explained variance of Δ centred per layer (what pca fits): top-1 {num(ev[0], 3)}, top-3 "
        f"{num(sum(ev[:3]), 3)}"
    )
    if pooled:
        text += (
            f"; centred on the pooled mean: top-1 {num(pooled[0], 3)}, top-3 {num(sum(pooled[:3]), 3)} "
            f"(the spread of the layers' mean updates is "
            f"{num(diag.get('between_layer_share', float('nan')), 3)} of that variance; |cosine| of "
            f"the two top components {num(diag.get('top_cosine_per_layer_vs_pooled', float('nan')), 3)})"
        )
    return [text]


def _control_bullets(diag: dict[str, Any]) -> list[str]:
    ctrl = diag.get("control") or {}
    out = []
    if ctrl.get("window") is not None:
        a, b = ctrl["window"]
        text = (
            f"control: the same estimator on the early window, depths {span(a, b)} ({ctrl['rule']}); "
            f"cosine with the direction {num(ctrl['cosine_to_direction'], 3, signed=True)}"
        )
        ev = ctrl.get("explained_variance") or []
        if ev:
            text += f"; its explained variance (centred per layer) top-1 {num(ev[0], 3)}"
        out.append(text)
    elif ctrl:
        out.append(f"control: {ctrl.get('rule', 'none')}")
    cc = diag.get("category_cosines") or {}
    late, early = cc.get("mean_pairwise_cosine"), cc.get("mean_pairwise_cosine_control")
    if late is not None:
        out.append(
            f"mean cosine between directions fit per category: {num(late, 3, signed=True)} on the window, "
            f"{num(early, 3, signed=True)} on the control window (read the "
            "first against the second: any update the inputs share gives a high cosine)"
        )
    return out


def direction_blocks(info: dict[str, Any], figs: Paths) -> list[Block]:
    diag = info.get("diagnostics", {})
    split, st = info["split"], diag.get("stability", {})
    de = diag.get("direct_effect", {})
    ns = diag.get("null_space_share")
    bullets = [
        f"window: depths {span(*info['window'])} ({info['window_source']}"
        + (f": {'; '.join(info['window_notes'])}" if info.get("window_notes") else "")
        + ")",
        f"fit split: {split['n_fit']} examples (fraction {split['fit_fraction']}, seed "
        f"{split['seed']}, category {split['category'] or 'all'}), ids sha256 "
        f"{split['example_ids_sha256'][:16]}…",
        *_spectrum_bullets(diag),
    ]
    if "mean_pairwise_cosine" in st:
        bullets.append(
            f"stability over {st['n_boot']} bootstrap refits: mean pairwise cosine "
            f"{num(st['mean_pairwise_cosine'], 3)} (min {num(st['min_pairwise_cosine'], 3)})"
        )
    if ns:
        bullets.append(
            f"null-space share ‖R_kᵀd‖ (k = {ns['k']}): {num(ns['share'], 3)} (random direction: "
            f"{num(ns['random_expected'], 3)})"
        )
    if de:
        bullets.append(
            f"direct effect at the last layer: answer-logit spread {num(de['answer_logit_spread'], spec='.3g')} "
            f"(random unit vectors {num(de['answer_logit_spread_random'], spec='.3g')}); d confidence/dα = "
            f"{num(de['d_confidence_per_alpha'], 3, signed=True)}, d entropy/dα = {num(de['d_entropy_per_alpha'], 3, signed=True)}"
        )
    bullets += _control_bullets(diag)
    for c in diag.get("compare", []):
        ctrl = c.get("cosine_control")
        bullets.append(
            f"cosine with the direction fit on {c['store']} ({c['n_fit']} ex.): {num(c['cosine'], 3, signed=True)}"
            + ("" if ctrl is None else f" (control window: {num(ctrl, 3, signed=True)})")
        )
    blocks: list[Block] = [
        Heading(2, "Calibration direction"),
        Para(
            f"Estimator `{info['estimator']}` on layer deltas h[l+1] − h[l] of "
            f"{info.get('model')} ({info.get('dataset')}, store {info.get('store_hash')})."
        ),
        Bullets(bullets),
    ]
    cc = diag.get("category_cosines") or {}
    if cc.get("categories"):
        to_ctrl = cc.get("cosine_to_control") or [None] * len(cc["categories"])
        rows = zip(cc["categories"], cc["n_fit"], cc["cosine_to_direction"], to_ctrl)
        header = ["category", "n fit", "cosine with the direction", "control window"]
        blocks.append(
            Table(
                header,
                [
                    [c, str(n), num(v, 3, signed=True), num(w, 3, signed=True)]
                    for c, n, v, w in rows
                ],
            )
        )
    captions = {
        "explained_variance": "Explained variance of the layer deltas",
        "category_cosines": "Cosine between directions fit per category",
    }
    return blocks + images(figs, captions)
