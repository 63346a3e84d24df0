"""The explorer's charts as Vega-Lite specifications, written with altair.

Every chart reads named data sets that the page's code (``explorer_rows.js``) fills and replaces as
the depth, the filter or the question changes (``view.data(name, rows)``); the specifications
themselves hold no data but constants. Rows of each data set:

- ``reliability``: store, bin, x0, x1 (the bar's extent inside its confidence bin, one slot per
  store), mid, accuracy, confidence (the bin's mean), count, desc;
- ``hist``: store, x0, x1, share (of the store's selected questions), count, desc;
- ``depth``: store, metric, layer, value, lo, hi; ``marks``: store, metric, layer, kind (rise,
  plateau), label; ``phases``: store, metric, start, end; ``chance``: store, value;
  ``cursor``: metric, layer;
- ``qpoints``: store, s (store index), i (question index), id, x (commitment depth, jittered),
  y (confidence at the last depth), outcome, desc;
- ``qprob``: store, option, layer, p; ``qmarks``: store, layer, p, kind (commitment, fall).
"""

from __future__ import annotations

from typing import Any

import altair as alt

METRIC_TITLES = {
    "accuracy": "accuracy",
    "ece": "ECE",
    "smece": "smECE",
    "smooth_ece": "smECE",
    "mce": "MCE",
    "brier": "Brier",
    "nll": "NLL (nats)",
    "mean_confidence": "mean confidence",
    "option_mass": "option mass",
}
WIDTH = 300


LEGEND_LABEL_LIMIT = 420  # px: a store's name and its lens's (" · NAME") stay readable


def _store_color(stores: list[str]) -> alt.Color:
    """One colour per store, the legend showing whole names (Vega-Lite cuts labels at 160 px,
    which hid the lens suffix that tells a store from itself through a fitted lens)."""
    legend = alt.Legend(title=None, labelLimit=LEGEND_LABEL_LIMIT)
    return alt.Color("store:N", scale=alt.Scale(domain=stores), legend=legend)


def reliability_spec(stores: list[str]) -> dict[str, Any]:
    """Accuracy per confidence bin (bars), the bin's mean confidence (black tick), its count
    (above the bar) and the diagonal."""
    base = alt.Chart(alt.NamedData(name="reliability"))
    x = alt.X("x0:Q", scale=alt.Scale(domain=[0, 1]), title="confidence")
    y = alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1]), title="accuracy in bin")
    tooltip = ["store:N", "bin:O", "count:Q", "accuracy:Q", "confidence:Q"]
    bars = base.mark_bar(opacity=0.85).encode(
        x=x,
        x2="x1:Q",
        y=y,
        y2=alt.datum(0),
        color=_store_color(stores),
        description="desc:N",
        tooltip=tooltip,
    )
    ticks = base.mark_rule(color="black", strokeWidth=2).encode(
        x="x0:Q", x2="x1:Q", y="confidence:Q"
    )
    counts = base.mark_text(dy=-5, fontSize=9).encode(x="mid:Q", y="accuracy:Q", text="count:Q")
    diagonal = (
        alt.Chart(alt.Data(values=[{}]))
        .mark_rule(color="gray", strokeDash=[4, 4])
        .encode(x=alt.datum(0), y=alt.datum(0), x2=alt.datum(1), y2=alt.datum(1))
    )
    chart = alt.layer(diagonal, bars, ticks, counts).properties(
        width=WIDTH, height=WIDTH, title="Reliability (bar: accuracy, tick: mean confidence)"
    )
    return chart.to_dict()


def histogram_spec(stores: list[str]) -> dict[str, Any]:
    """Share of the selected questions per confidence bin."""
    chart = (
        alt.Chart(alt.NamedData(name="hist"))
        .mark_bar(opacity=0.85)
        .encode(
            x=alt.X("x0:Q", scale=alt.Scale(domain=[0, 1]), title="confidence"),
            x2="x1:Q",
            y=alt.Y("share:Q", title="share of questions"),
            y2=alt.datum(0),
            color=_store_color(stores),
            description="desc:N",
            tooltip=["store:N", "count:Q", "share:Q"],
        )
        .properties(width=WIDTH, height=WIDTH, title="Confidence histogram")
    )
    return chart.to_dict()


def depth_spec(stores: list[str], metrics: list[str]) -> dict[str, Any]:
    """One panel per metric over depth: line, 95% band, correction phase shaded, rise and
    plateau as dashed rules, chance on the accuracy panel, the slider's depth as a black rule."""
    color = _store_color(stores)
    panels = []
    for m in metrics:
        keep = alt.datum.metric == m
        x = alt.X("layer:Q", title="depth")
        phase = (
            alt.Chart(alt.NamedData(name="phases"))
            .transform_filter(keep)
            .mark_rect(opacity=0.12)
            .encode(x=alt.X("start:Q", title="depth"), x2="end:Q", color=color)
        )
        band = (
            alt.Chart(alt.NamedData(name="depth"))
            .transform_filter(keep)
            .mark_area(opacity=0.2)
            .encode(x=x, y=alt.Y("lo:Q", title=METRIC_TITLES.get(m, m)), y2="hi:Q", color=color)
        )
        line = (
            alt.Chart(alt.NamedData(name="depth"))
            .transform_filter(keep)
            .mark_line(point=alt.OverlayMarkDef(size=12))
            .encode(
                x=x,
                y=alt.Y("value:Q", scale=alt.Scale(zero=False)),
                color=color,
                tooltip=["store:N", "layer:Q", "value:Q", "lo:Q", "hi:Q"],
            )
        )
        marks = (
            alt.Chart(alt.NamedData(name="marks"))
            .transform_filter(keep)
            .mark_rule(strokeDash=[3, 3])
            .encode(x="layer:Q", color=color, tooltip=["store:N", "label:N", "layer:Q"])
        )
        cursor = (
            alt.Chart(alt.NamedData(name="cursor"))
            .transform_filter(keep)
            .mark_rule(color="black")
            .encode(x="layer:Q")
        )
        layers = [phase, band, line, marks, cursor]
        if m == "accuracy":
            chance = (
                alt.Chart(alt.NamedData(name="chance"))
                .mark_rule(color="gray", strokeDash=[1, 3])
                .encode(y="value:Q", tooltip=["store:N", "value:Q"])
            )
            layers.append(chance)
        panels.append(
            alt.layer(*layers).properties(width=250, height=150, title=METRIC_TITLES.get(m, m))
        )
    return alt.concat(*panels, columns=3).resolve_scale(y="independent").to_dict()


def questions_spec(stores: list[str]) -> dict[str, Any]:
    """Each selected question: commitment depth (x, jittered) against confidence at the last
    depth; click one to open it."""
    chart = (
        alt.Chart(alt.NamedData(name="qpoints"))
        .mark_point(filled=True, size=22, opacity=0.55, cursor="pointer")
        .encode(
            x=alt.X("x:Q", title="commitment depth"),
            y=alt.Y("y:Q", scale=alt.Scale(domain=[0, 1]), title="confidence, last depth"),
            color=_store_color(stores),
            shape=alt.Shape(
                "outcome:N", scale=alt.Scale(domain=["right", "wrong"], range=["circle", "cross"])
            ),
            description="desc:N",
            tooltip=["store:N", "id:N", "outcome:N", "y:Q"],
        )
        .properties(width=460, height=260, title="Questions (click one)")
    )
    return chart.to_dict()


def question_spec() -> dict[str, Any]:
    """The probability of each option over depth for the chosen question (one dash pattern per
    store), the commitment depth (rule) and the depths where confidence falls (triangles)."""
    lines = (
        alt.Chart(alt.NamedData(name="qprob"))
        .mark_line(point=alt.OverlayMarkDef(size=10))
        .encode(
            x=alt.X("layer:Q", title="depth"),
            y=alt.Y("p:Q", scale=alt.Scale(domain=[0, 1]), title="probability"),
            color=alt.Color("option:N", title="option"),
            strokeDash=alt.StrokeDash("store:N", title=None),
            tooltip=["store:N", "option:N", "layer:Q", "p:Q"],
        )
    )
    marks = alt.Chart(alt.NamedData(name="qmarks"))
    commit = (
        marks.transform_filter(alt.datum.kind == "commitment")
        .mark_rule(color="black", strokeDash=[4, 2])
        .encode(x="layer:Q", tooltip=["store:N", "kind:N", "layer:Q"])
    )
    falls = (
        marks.transform_filter(alt.datum.kind == "fall")
        .mark_point(shape="triangle-down", color="crimson", filled=True, size=70)
        .encode(x="layer:Q", y="p:Q", tooltip=["store:N", "kind:N", "layer:Q", "p:Q"])
    )
    chart = alt.layer(lines, commit, falls).properties(
        width=460, height=260, title="Option probabilities over depth"
    )
    return chart.to_dict()


def all_specs(stores: list[str], metrics: list[str]) -> dict[str, dict[str, Any]]:
    """Every chart of the page, by the id of the element it is drawn in."""
    return {
        "reliability": reliability_spec(stores),
        "hist": histogram_spec(stores),
        "depth": depth_spec(stores, metrics),
        "qpoints": questions_spec(stores),
        "question": question_spec(),
    }
