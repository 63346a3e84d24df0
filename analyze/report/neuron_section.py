"""The report section of ``layercal neurons``, as document blocks.

The command renders it into ``section.md``; ``layercal analyze`` builds the same blocks again
from the folder's tables and ``meta.json`` (:mod:`analyze.report.sections`).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from analyze.report.intervention_sections import Paths, images
from analyze.report.neuron_figures import effect_order
from analyze.report.numbers import num, with_ci
from analyze.report.render import Block, Bullets, Heading, Para, Table


def _block_rows(blocks: pl.DataFrame) -> list[list[str]]:
    return [
        [
            str(r["layer"]),
            num(r["delta_rel"], 3),
            num(r["null_share"], 3),
            num(r["null_contribution"], 3),
            with_ci(r, "d_ece", signed=True),
            with_ci(r, "d_nll", signed=True),
            with_ci(r, "d_confidence", signed=True),
            with_ci(r, "d_accuracy", signed=True),
            num(r["random_d_ece"], 3),
        ]
        for r in blocks.iter_rows(named=True)
    ]


def blocks_blocks(blocks: pl.DataFrame, meta: dict[str, Any]) -> list[Block]:
    """The per-block part: method, a summary, the table."""
    k, last = meta["k"], meta["last_layer"]
    top = blocks.sort("null_contribution", descending=True).row(0, named=True)
    most = blocks.sort(pl.col("d_ece").abs(), descending=True).row(0, named=True)
    lm = meta["last"]
    header = ["block → layer", "‖Δ‖/‖h_L‖", "N_k share", "N_k part of h_L", "ΔECE", "ΔNLL"]
    header += ["Δconfidence", "Δaccuracy", "ΔECE random"]
    return [
        Heading(3, "Which blocks write into the null space"),
        Para(
            f"Each block's write at the final token, Δ = h[l] − h[l − 1], split by N_{k} (the "
            f"{k} right singular vectors of smallest σ of the effective unembedding, final-norm "
            f"gain folded in). *N_k share*: mean ‖BᵀΔ‖/‖Δ‖ (a random {k}-dim subspace: "
            f"{num(blocks['random_expected'][0], 3)}); *N_k part of h_L*: mean ⟨BᵀΔ, Bᵀh_L⟩/‖Bᵀh_L‖², "
            f"the block's part of the last residual's null-space content (with the embedding's, "
            f"{num(meta['embedding_null_contribution'], 3)}, they sum to 1). Then h_L ← h_L − BBᵀΔ: "
            f"the last layer (L{last}; ECE {num(lm['ece'], 3)}, NLL {num(lm['nll'], 3)}, confidence "
            f"{num(lm['confidence'], 3)}, accuracy {num(lm['accuracy'], 3)}) without only that "
            f"block's null-space write, through the final norm; {meta['n_examples']} examples, "
            f"paired bootstrap ({meta['n_boot']} resamples), 95%. *ΔECE random*: the block's "
            f"write removed in a random {k}-dim subspace instead (mean of {meta['n_random']})."
        ),
        Para(
            f"The largest part of the last residual's N_{k} content comes from block → "
            f"L{top['layer']} ({num(top['null_contribution'], 3)}); removing the null-space write "
            f"of block → L{most['layer']} changes the last layer's ECE most "
            f"({with_ci(most, 'd_ece', signed=True)})."
        ),
        Table(header, _block_rows(blocks)),
    ]


def _neuron_rows(sel: pl.DataFrame, with_cos: bool) -> list[list[str]]:
    rows = []
    for r in sel.iter_rows(named=True):
        who = (
            f"#{r['candidate_rank']}" if r["role"] == "candidate" else f"ctrl of {r['control_of']}"
        )
        row = [str(r["neuron"]), who, num(r["norm"], 3), num(r["null_share"], 3)]
        row += [num(r["logit_var_unit"], spec=".3g"), with_ci(r, "d_ece", signed=True)]
        row += [num(r["d_nll"], 3), num(r["d_confidence"], 3), num(r["d_accuracy"], 3)]
        row += [num(r["direct_d_ece"], 3), num(r["scale_mediated"], 3)]
        rows.append(row + ([num(r["direction_cosine"], 3)] if with_cos else []))
    return rows


def neurons_blocks(neurons: pl.DataFrame, sets: pl.DataFrame, meta: dict[str, Any]) -> list[Block]:
    """The per-neuron part: capture, candidates and controls, sets, direction."""
    cap, bc = meta.get("capture") or {}, meta["block_change"]
    with_cos = "direction_cosine" in neurons.columns
    header = ["neuron", "role", "‖w_out‖", "N_k share", "LogitVar/‖w‖²", "ΔECE", "ΔNLL"]
    header += ["Δconf.", "Δacc.", "direct ΔECE", "via scale"] + (["cos dir."] if with_cos else [])
    cand = effect_order(neurons.filter(pl.col("role") == "candidate"))
    ctrl = neurons.filter(pl.col("role") == "control")
    largest = neurons.sort(pl.col("d_ece").abs(), descending=True).head(5)
    set_rows = [
        [
            r["set"],
            str(r["n_neurons"]),
            with_ci(r, "d_ece", signed=True),
            with_ci(r, "d_confidence", signed=True),
            with_ci(r, "d_accuracy", signed=True),
            num(r["direct_d_ece"], 3),
            with_ci(r, "carried"),
        ]
        for r in sets.iter_rows(named=True)
    ]
    out: list[Block] = [
        Heading(3, "Last-block neurons"),
        Para(
            f"{meta['neurons']} neurons of block {cap.get('block', '?')} ({cap.get('where', '')}): "
            f"the MLP's hidden activation at the final token, the input of its down projection. "
            f"Candidates (after Stolfo et al. 2024): of the neurons whose ‖w_out‖ is at least "
            f"the {num(meta['norm_quantile'], spec='g')} quantile, the {meta['n_candidates']} of smallest "
            f"variance over the vocabulary of W̃·w_out/‖w_out‖² (W̃: W_U with the final-norm "
            f"gain). Mean ablation a ← mean(a) at the final token: total effect with the final "
            f"norm recomputed, direct effect with its scale frozen; *via scale* = 1 − |direct "
            f"ΔNLL|/|total ΔNLL|. Each candidate has {meta['n_controls']} controls: neurons "
            f"drawn from the 20 nearest in norm."
        ),
        Table(header, _neuron_rows(cand, with_cos)),
    ]
    if ctrl.height:
        out.append(
            Para(
                f"Matched controls ({ctrl.height}): median |ΔECE| "
                f"{num(ctrl['d_ece'].abs().median(), 3)}, candidates "
                f"{num(cand['d_ece'].abs().median(), 3)}; largest |ΔECE| of any neuron (chosen by "
                f"the effect itself, descriptive): "
                + ", ".join(
                    f"{r['neuron']} ({num(r['d_ece'], 3, signed=True)})"
                    for r in largest.iter_rows(named=True)
                )
                + "."
            )
        )
    out += [
        Para(
            f"Ablated together. The last block changes ECE by {with_ci(bc, 'd_ece', signed=True)} "
            f"({num(bc['ece_before'], 3)} → {num(bc['ece_after'], 3)}); *carried* = (ECE ablated − "
            f"ECE L{meta['last_layer']}) / (ECE L{meta['last_layer'] - 1} − ECE "
            f"L{meta['last_layer']}): 1 = the set undoes the block's whole change of ECE; "
            "*all*: the block's whole MLP mean-ablated."
        ),
        Table(
            ["set", "neurons", "ΔECE", "Δconfidence", "Δaccuracy", "direct ΔECE", "carried"],
            set_rows,
        ),
    ]
    cos = meta.get("direction")
    if cos:
        out.append(
            Bullets(
                [
                    f"cosine between the calibration direction and each output weight: largest "
                    f"|cos| {num(cos['max_abs_cosine'], 3)} (neuron {cos['max_abs_neuron']}), mean |cos| "
                    f"of the candidates {num(cos['candidates_mean_abs_cosine'], 3)}, of all neurons "
                    f"{num(cos['all_mean_abs_cosine'], 3)} (random directions: "
                    f"{num(cos['random_expected'], 3)})"
                ]
            )
        )
    return out


CAPTIONS = {
    "block_writes": "Null-space writes by block, and the last layer without each",
    "neuron_scan": "Last-block neurons: output norm against logit variance, coloured by N_k share",
    "neuron_effects": "ΔECE of each candidate and its matched controls, total and direct",
}


def neuron_section(
    blocks: pl.DataFrame,
    meta: dict[str, Any],
    neurons: pl.DataFrame | None,
    sets: pl.DataFrame | None,
    figs: Paths,
) -> list[Block]:
    """The whole section; ``meta``: ``{"blocks": ..., "neurons": ... or None, "store": ...}``."""
    out: list[Block] = [
        Heading(2, "Where the correction is made: blocks and neurons"),
        *blocks_blocks(blocks, meta["blocks"]),
    ]
    if neurons is not None and sets is not None and meta.get("neurons"):
        out += neurons_blocks(neurons, sets, meta["neurons"])
    else:
        out.append(Para(f"No neuron analysis: {meta.get('no_neurons', 'no capture')}"))
    return out + images(figs, CAPTIONS)
