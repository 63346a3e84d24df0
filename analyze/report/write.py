"""The report a researcher sends to a colleague: ``report.html`` (self-contained) and ``report.md``.

Contents per store: plain-language findings generated from the numbers (:func:`findings`), what
was analysed (store, hash, model, data, template, parameters), the headline curves, the depth
landmarks with their intervals, reliability diagrams, group curves and a compact per-layer table.
Several stores get a side-by-side comparison section first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from analyze.report import plot as P
from analyze.report.endpoint_findings import endpoint_findings
from analyze.report.figures import write_figures
from analyze.report.findings import findings, reading_guide
from analyze.report.lenses import lens_blocks, lens_name
from analyze.report.render import Block, Bullets, Heading, Image, Para, Table, to_html, to_markdown
from analyze.report.sections import section_blocks
from analyze.report.tables import (
    comparison_row,
    endpoint_table,
    landmark_blocks,
    layer_table,
    store_table,
)
from analyze.results import AnalysisResult

__all__ = ["FORMATS", "findings", "write_report"]

FORMATS = ("html", "md")
CAPTIONS = {
    "metrics_over_depth": "Accuracy, ECE and MCE over depth (logit lens), with bootstrap 95% "
    "intervals, chance (mean 1/K), the rise / plateau / peak-ECE layers and the correction phase.",
    "confidence_over_depth": "Mean confidence (softmax over the answer options only; accuracy "
    "dashed) with option mass beside it (the full-vocabulary probability the options hold; "
    "hatched where it is under 1%: there the lens reads tokens the model does not predict), "
    "entropy over the options and flip rate relative to the last layer.",
    "reliability_final": "Reliability diagram of the last layer: accuracy per confidence bin "
    "against the diagonal; hatched = gap to the bin's mean confidence; share of examples below.",
    "reliability_grid": "Reliability diagrams over depth (evenly spaced layers plus landmarks).",
    "confidence_hist": "Confidence histograms at the same layers, with accuracy and mean "
    "confidence marked.",
}


def _images(figs: dict[str, dict[str, Path]], names: Sequence[str]) -> list[Block]:
    """Image blocks of the figures ``names`` that were written, with their captions."""
    out: list[Block] = []
    for name in (n for n in names if n in figs):
        base = next((k for k in CAPTIONS if name.startswith(k)), "")
        group = name.removeprefix("by_").split("_")[0]
        caption = CAPTIONS.get(base) or f"Accuracy and ECE over depth per {group}."
        out.append(Image(figs[name]["png"], caption, figs[name]["svg"]))
    return out


def _store_section(
    r: AnalysisResult, i: int, rs: list[AnalysisResult], figs: dict[str, dict[str, Path]], h: int
) -> list[Block]:
    """Everything about store ``i``; headings at level ``h``."""

    def name(base: str) -> str:
        return P.per_store_name(base, i, rs)

    kinds = r.by_group["group_by"].unique().to_list() if "group_by" in r.by_group.columns else []
    groups = [name(f"by_{P.slug(g)}") for g in sorted(map(str, kinds))]
    warnings = [str(w) for w in r.meta.get("warnings") or []]
    blocks: list[Block] = [
        Heading(h, "Findings"),
        Para(" ".join(findings(r) + endpoint_findings(r)), css="findings"),
        Para(reading_guide(r), css="muted"),
        *([Bullets([f"warning: {w}" for w in warnings])] if warnings else []),
        Heading(h, "What was analysed"),
        store_table(r),
        Para(
            "Everything else the analysis recorded (its checks, timings, cache key and the "
            "temperature fit's details) is in meta.json beside layers.csv.",
            css="muted",
        ),
    ]
    if len(rs) == 1:
        curves = _images(figs, ["metrics_over_depth", "confidence_over_depth"])
        blocks += [Heading(h, "Calibration over depth"), *curves]
    blocks += [Heading(h, "Depth landmarks"), *landmark_blocks(r)]
    reliability = [name("reliability_final"), name("reliability_grid"), name("confidence_hist")]
    blocks += [Heading(h, "Reliability"), *_images(figs, reliability)]
    if groups:
        blocks += [Heading(h, "By group"), *_images(figs, groups)]
    note = "Accuracy and ECE with bootstrap 95% intervals in brackets; highlighted rows: landmarks"
    blocks += [
        Heading(h, "Per-layer metrics"),
        Para(note + " and the correction phase.", css="muted"),
        layer_table(r),
    ]
    if (ends := endpoint_table(r)) is not None:
        blocks += [
            Heading(h, "Endpoints per layer"),
            Para(
                "ECE beside its floor (the ECE of a perfectly calibrated predictor at this n), "
                "smooth ECE, NLL and Brier with bootstrap 95% intervals; the signed gap, AUROC "
                "and the top-label Brier decomposition tell a correction (AUROC or resolution "
                "rise) from a rescaling (gap and reliability shrink alone).",
                css="muted",
            ),
            ends,
        ]
    return blocks


def _comparison(rs: list[AnalysisResult], figs: dict[str, dict[str, Path]]) -> list[Block]:
    """Side-by-side section: one table row per store, overlaid curves, findings per store."""
    header = ["store", "hash", "data", "n", "depths", "rise", "plateau", "peak ECE"]
    header += ["ΔECE [95% CI]", "final accuracy", "final ECE"]
    return [
        Heading(2, "Side by side"),
        Table(header, [comparison_row(r) for r in rs]),
        *_images(figs, ["metrics_over_depth", "confidence_over_depth"]),
        Bullets([f"{r.label}: {' '.join(findings(r) + endpoint_findings(r))}" for r in rs]),
    ]


def _explorer_link(out: Path) -> Para:
    """A link to the explorer page in the report's folder, or how to write one."""
    if (out / "explorer.html").is_file():
        text = "Open the interactive explorer (explorer.html): move through depth, filter by "
        return Para(text + "subject, look at the questions.", href="explorer.html")
    return Para(
        "An interactive explorer of these numbers: layercal explore STORE [STORE ...] -o "
        f"{out.as_posix()}/explorer.html (from this analysis' cache); a report written after it "
        "links it here.",
        css="muted",
    )


def _version() -> str:
    try:
        return metadata.version("layercal")
    except metadata.PackageNotFoundError:
        return "dev"


def write_report(
    results: Sequence[AnalysisResult],
    out_dir: Path,
    *,
    fmt: str = "html",
    relative_depth: bool | None = None,
    n_grid: int = 12,
    include_sections: bool = True,
) -> Path:
    """Write figures (``out_dir/figures``, PNG+SVG), ``report.html`` and ``report.md``.

    ``report.html`` is self-contained (inline CSS, PNGs as data URIs); ``report.md`` links the
    PNG files. ``relative_depth`` and ``n_grid`` (layers in the reliability grid) go to
    :func:`~analyze.report.figures.write_figures`. Returns the path of the report in ``fmt`` (``"html"``
    or ``"md"``). ``include_sections``: append every ``out_dir/<folder>/section.md`` written by
    ``layercal nullspace`` / ``direction fit`` / ``steer`` run with ``--out out_dir/<folder>``."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    rs = list(results)
    if not rs:
        raise ValueError("write_report needs at least one AnalysisResult")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = write_figures(rs, out / "figures", relative_depth=relative_depth, n_grid=n_grid)
    if len(rs) == 1:
        title = f"Calibration across layers: {rs[0].label}"
    else:
        title = f"Calibration across layers: {len(rs)} stores compared"
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    intro = f"Generated by layercal {_version()} on {stamp}. Logit-lens probabilities over the "
    if any(lens_name(r) not in (None, "logit") for r in rs):  # analyze --lens DIR
        intro = intro.replace("Logit-lens", "Lens (section Lenses)")
    blocks: list[Block] = [Para(intro + "answer options at every layer.", css="muted")]
    blocks.append(_explorer_link(out))
    blocks += lens_blocks(rs, out / "figures")  # only under named lenses (analyze --lens)
    if len(rs) == 1:
        blocks += _store_section(rs[0], 0, rs, figs, 2)
    else:
        blocks += _comparison(rs, figs)
        for i, r in enumerate(rs):
            blocks += [Heading(2, f"{i + 1}. {r.label}"), *_store_section(r, i, rs, figs, 3)]
    hashes = {str(r.meta.get("store_hash")) for r in rs}
    if include_sections and (extra := section_blocks(out, hashes, shift=1)):
        blocks += [Heading(2, "Further analyses"), *extra]
    (out / "report.html").write_text(to_html(blocks, title), encoding="utf-8")
    (out / "report.md").write_text(to_markdown(blocks, title, out), encoding="utf-8")
    return out / f"report.{fmt}"
