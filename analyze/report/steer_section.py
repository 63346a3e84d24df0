"""The report section of ``layercal steer``, as document blocks.

The table of every method on the test split (with the ECE floor and smECE beside ECE), then for
each method and each endpoint (NLL, Brier, ECE, accuracy) whether it improved with an interval
that excludes 0, beside every "no effect" the minimum detectable effect
(:mod:`analyze.interventions.steer_power`), the contrasts with temperature scaling, and
transfer. Like the other sections, ``layercal analyze`` builds it again from the folder's tables.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from analyze.report.intervention_sections import Paths, images
from analyze.report.numbers import MISSING, num, with_ci
from analyze.report.render import Block, Heading, Para, Table


def baseline_para(base: dict[str, Any] | None) -> list[Block]:
    """What *none* is; online, its difference from the stored lens and the tolerance."""
    if not base:
        return []
    text = f"*none* is {base['what']}"
    if base["kind"] == "online_alpha0":
        text += (
            f" (the online α = 0 run, so every change is the steering's): max |logit difference| "
            f"from the stored lens at depth {base['compared_layer']} "
            f"{num(base['max_abs_diff_vs_stored'], spec='.2e')}, within the tolerance {num(base['tolerance'], spec='.2e')} "
            f"(store {base['store_dtype']}, model {base['model_dtype']})"
        )
    return [Para(text + ".")]


def _verdict_rows(tab: pl.DataFrame, prefix: str = "d_") -> list[list[str]]:
    """Per method (not *none*): each endpoint's verdict with its interval, and the MDE beside
    every "no effect" (:func:`analyze.interventions.steer_power.verdict_text`)."""
    from analyze.interventions.steer_power import ENDPOINTS, verdict_text

    out = []
    for r in tab.iter_rows(named=True):
        if r["method"] == "none":
            continue
        name = r["method"] if "reference" not in r else f"{r['method']} − {r['reference']}"
        out.append([name, *(verdict_text(r, k, prefix) for k in ENDPOINTS)])
    return out


def _steer_intro(meta: dict[str, Any]) -> str:
    sp = meta["splits"]
    read = meta.get("read_layer", meta.get("last_layer"))
    where = (
        f"read through the lens at depth {read} (the model truncated there; offline, exact)"
        if meta.get("truncated")
        else f"read at depth {read}"
    )
    rule = (meta.get("selection") or {}).get("rule") or (
        f"the smallest ECE with accuracy at most {meta.get('max_accuracy_drop')} below α = 0's"
    )
    rnd = meta.get("random_directions") or {}
    share = rnd.get("null_space_share")
    random_text = (
        f"{meta.get('n_random', 0)} random directions with the direction's null-space share "
        f"({num(share, 3)} in N_{rnd.get('k')})"
        if rnd.get("kind") == "null_share_matched" and share is not None
        else f"{meta.get('n_random', 0)} isotropic random directions"
    )
    text = (
        f"h ← h + α·s·d at depth {meta['layer']} ({meta['mode']}), {where}; s = "
        f"{meta['scale']:.4g} (mean residual norm on the fit split); α ∈ {meta['alphas']}. "
        f"Every method has one scalar (α, T or β), chosen by one rule: {rule}. Source "
        f"{sp['source']}: dev {sp['n_dev']}, test {sp['n_test']} examples (seed {sp['seed']}; "
        f"{sp['excluded_fit_examples']} fit examples excluded). Controls: temperature scaling, "
        f"scaling N_k by β, {random_text} (each its own α), and direction+temperature (α, then "
        "T on dev on top)."
    )
    if meta.get("direction_store") and meta["direction_store"] != "this store":
        text += (
            " The direction was fit on another store of the same model and is applied "
            "unchanged (d and s); α is chosen on this store's dev split."
        )
    return text


def steer_blocks(
    tab: pl.DataFrame,
    transfer: pl.DataFrame,
    meta: dict[str, Any],
    figs: Paths,
    contrasts: pl.DataFrame | None = None,
) -> list[Block]:
    rows = [
        [
            r["method"],
            str(r["layer"]),
            num(r["param"], 3),
            with_ci(r, "accuracy"),
            with_ci(r, "nll"),
            with_ci(r, "brier"),
            with_ci(r, "ece"),
            num(r.get("ece_floor"), 3),
            with_ci(r, "smece"),
            with_ci(r, "mce"),
        ]
        for r in tab.iter_rows(named=True)
    ]
    tr = [
        [
            r["target"],
            r["method"],
            str(r["n"]),
            with_ci(r, "d_nll", signed=True) if "d_nll" in r else MISSING,
            with_ci(r, "d_ece", signed=True),
            with_ci(r, "d_mce", signed=True),
            with_ci(r, "d_accuracy", signed=True),
        ]
        for r in transfer.iter_rows(named=True)
    ]
    online = meta.get("online")
    header = ["method", "layer", "α / T / β", "accuracy", "NLL", "Brier", "ECE", "ECE floor"]
    endpoints = ["NLL", "Brier", "ECE", "accuracy"]
    blocks: list[Block] = [
        Heading(2, "Steering with the calibration direction"),
        Para(_steer_intro(meta)),
        Para("Test split, 95% bootstrap intervals:"),
        Table([*header, "smECE", "MCE"], rows),
        Para(
            "Against *none* (paired intervals; improved / worse when the interval excludes 0, "
            "else no effect with the minimum detectable effect):"
        ),
        Table(["method", *endpoints], _verdict_rows(tab)),
    ]
    if contrasts is not None and contrasts.height:
        blocks += [
            Para("Against temperature scaling alone (paired, same test examples):"),
            Table(["contrast", *endpoints], _verdict_rows(contrasts)),
        ]
    blocks += [Para(POWER_NOTE), *baseline_para(meta.get("baseline"))]
    if online:
        diff = online.get("max_abs_diff_vs_offline")
        check = (
            ""
            if diff is None
            else f"; max |online − offline| logit at the last depth: {num(diff, spec='.2e')}"
        )
        blocks.append(
            Para(
                f"Online with {online['model']} ({online['dtype']}), positions "
                f"{online['positions']}, KV reuse {online['kv_reuse']}{check}."
            )
        )
    if tr:
        blocks += [
            Para("Transfer (every choice unchanged; held-out examples):"),
            Table(["target", "method", "n", "ΔNLL", "ΔECE", "ΔMCE", "Δaccuracy"], tr),
        ]
    captions = {
        "alpha_sweep": "NLL, ECE and accuracy over α",
        "reliability": "Reliability on the test split, before and after",
        "transfer": "Transfer of the direction and of temperature scaling",
    }
    return blocks + images(figs, captions)


POWER_NOTE = (
    "MDE: the minimum detectable effect at 80% power, (1.960 + 0.842) × SE with SE = the "
    "paired 95% interval's width / (2 × 1.960): the smallest true change a two-sided 5% test "
    "(the interval excluding 0) finds with probability 0.8 at this n. A method whose chosen "
    "value is neutral (α = 0, β = 1) equals *none*; its MDE is that of its nearest grid value "
    "(`mde_param` in steering.csv). ECE floor: the expected ECE of a perfectly calibrated "
    "predictor with the same confidences at this n; an ECE near it cannot fall further."
)
