"""The explorer page in a real headless Chromium (tests/analyze/explore/browser.py): the slider,
the filter and the question view show the analysis' numbers, the filtered ones as the Python
metric code computes them, and the page makes no request and logs no error.

Two stores of real MMLU questions with planted lens logits (tests/analyze/explore/stores.py);
the first is analysed by ``layercal analyze`` (layers.csv, reliability.npz), then ``layercal
explore`` writes the page of both from that analysis' cache.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from analyze.calibration import (
    answer_probs,
    bin_sums,
    confidence_and_correct,
    per_layer_bootstrap,
    per_layer_metrics,
)
from analyze.cli import main as layercal
from analyze.explore import AnalysisParams, Source, load_source, option_probs, question_summary
from analyze.explore.page import render_page, vega_bundle
from tests import REPO
from tests.analyze.explore.browser import Session, open_page
from tests.analyze.explore.stores import explorer_store

SCREENSHOT = REPO / "docs" / "figures" / "explorer.png"
PANEL = ("accuracy", "ece", "mce", "brier", "nll", "mean_confidence", "option_mass")


@dataclass
class Built:
    report: Path
    page: Path
    sources: list[Source]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Built:
    root = tmp_path_factory.mktemp("explorer")
    zero = explorer_store(root / "zero.zarr", data_dir, seed=0)
    more = explorer_store(root / "five.zarr", data_dir, seed=1, shift=0.15, three_options=3)
    report = root / "report"
    assert layercal(["analyze", str(zero), "--out", str(report)]) == 0
    page = report / "explorer.html"
    assert layercal(["explore", str(zero), str(more), "-o", str(page)]) == 0
    cache = report / ".cache"
    sources = [load_source(s, AnalysisParams(), cache) for s in (zero, more)]
    assert all(s.result.meta["cache_hit"] for s in sources)
    return Built(report, page, sources)


@pytest.fixture(scope="module")
def session(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Any:
    with open_page(built.page, tmp_path_factory.mktemp("chromium-profile")) as s:
        yield s


def set_depth(s: Session, depth: int) -> None:
    s.page.locator("#depth").fill(str(depth))
    s.wait_for(depth=depth)


def set_filter(s: Session, category: str, subject: str = "all") -> None:
    s.page.select_option("#category", category)
    s.wait_for(category=category, subject="all")
    if subject != "all":
        s.page.select_option("#subject", subject)
        s.wait_for(category=category, subject=subject)


def bars(s: Session, store: int) -> dict[int, dict[str, float]]:
    """The reliability diagram's bars of one store as drawn: {bin: count, accuracy, confidence}."""
    labels = s.page.eval_on_selector_all(
        "#chart-reliability path[aria-label^='store=']", "els => els.map(e => e.ariaLabel)"
    )
    out = {}
    for text in labels:
        f = dict(part.split("=", 1) for part in text.split(";"))
        if int(f["store"]) == store:
            out[int(f["bin"])] = {k: float(f[k]) for k in ("count", "accuracy", "confidence")}
    return out


def panel(s: Session, store: int) -> dict[str, tuple[float, float, float]]:
    """The metrics panel of one store: {metric: (value, lo, hi)}."""
    cells = s.page.eval_on_selector_all(
        f"#panel td[data-store='{store}'][data-value]",
        "els => els.map(e => [e.dataset.metric, e.dataset.value, e.dataset.lo, e.dataset.hi])",
    )
    return {m: (float(v), float(lo), float(hi)) for m, v, lo, hi in cells}


def test_the_slider_shows_that_depth_s_reliability_and_metrics(session: Session, built: Built):
    layers = pl.read_csv(built.report / "layers.csv")
    with np.load(built.report / "reliability.npz") as z:
        rel = {k: z[k] for k in z.files}
    n = int(layers["n"][0])
    for depth in (2, len(layers) // 2, len(layers) - 1):
        set_depth(session, depth)
        got = bars(session, 0)
        count = rel["count"][depth]
        assert sorted(got) == np.flatnonzero(count).tolist()
        for b, bar in got.items():
            assert bar["count"] == count[b]
            assert bar["accuracy"] == pytest.approx(rel["sum_correct"][depth, b] / count[b], 1e-12)
            assert bar["confidence"] == pytest.approx(rel["sum_conf"][depth, b] / count[b], 1e-12)
        ece = sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in got.values()) / n
        assert ece == pytest.approx(layers["ece"][depth], abs=1e-12)
        shown = panel(session, 0)
        # smECE, where the analysis reports it, for the whole store (the page does not recompute it)
        assert set(shown) == {*PANEL, *(["smece"] if "smece" in layers.columns else [])}
        assert "smece" in shown
        for m, (value, lo, hi) in shown.items():
            assert value == pytest.approx(layers[m][depth], abs=1e-12), m
            if f"{m}_lo" in layers.columns:
                assert (lo, hi) == pytest.approx(
                    (layers[f"{m}_lo"][depth], layers[f"{m}_hi"][depth])
                )
    session.assert_clean()


def _subset(src: Source, subject: str) -> tuple[np.ndarray, ...]:
    rows = np.flatnonzero(src.questions["subject"].to_numpy() == subject)
    z = np.moveaxis(src.result.examples["answer_logits"][rows], 1, 0)  # (L, n, K)
    mass = src.result.examples["option_mass"][rows].astype(np.float64)
    return z, src.questions["label"].to_numpy()[rows], src.mask[rows], mass


def test_a_filter_recomputes_the_panels_as_the_python_metric_code_does(
    session: Session, built: Built
):
    set_filter(session, "humanities", "philosophy")
    depth = 9
    set_depth(session, depth)
    for si, src in enumerate(built.sources):
        z, label, mask, mass = _subset(src, "philosophy")
        ref = per_layer_metrics(z, label, mask, n_bins=10, mce_min_count=10)
        ref["option_mass"] = mass.mean(axis=0)
        shown = panel(session, si)
        assert set(shown) == set(PANEL)
        for m in PANEL:
            assert shown[m][0] == pytest.approx(ref[m][depth], abs=1e-12, nan_ok=True), m
        # the page's bootstrap (200 resamples, its own seeded generator) against the analysis'
        # (1000 resamples): the same intervals up to resampling noise
        ci = per_layer_bootstrap(z, label, mask, n_bins=10, n_boot=1000, seed=0)
        for m in ("accuracy", "ece", "nll", "mean_confidence"):
            lo, hi = ci[m][0][depth], ci[m][1][depth]
            tol = 0.3 * (hi - lo) + 1e-3
            assert shown[m][1] == pytest.approx(lo, abs=tol) and shown[m][2] == pytest.approx(
                hi, abs=tol
            ), (m, shown[m], (lo, hi))
        conf, correct = confidence_and_correct(answer_probs(z[depth], mask), label)
        count, s_conf, s_corr = bin_sums(conf, correct.astype(float), 10)
        got = bars(session, si)
        assert sorted(got) == np.flatnonzero(count).tolist()
        for b, bar in got.items():
            assert bar["count"] == count[b]
            assert bar["accuracy"] == pytest.approx(s_corr[b] / count[b], abs=1e-12)
        # the curves over depth: every depth, the same numbers
        rows = session.page.evaluate(
            "name => layercalExplorer.views.depth.data('depth').filter(r => r.store === name)",
            built_name(session, si),
        )
        for m in ("accuracy", "ece", "nll", "mean_confidence", "option_mass"):
            curve = sorted((r["layer"], r["value"]) for r in rows if r["metric"] == m)
            assert [v for _, v in curve] == pytest.approx(ref[m].tolist(), abs=1e-12), m
    # the analysis' own per-subject numbers (from its float64 logits) agree too
    groups = pl.read_csv(built.report / "by_group.csv").filter(
        (pl.col("group") == "philosophy") & (pl.col("layer") == depth)
    )
    shown = panel(session, 0)
    for m in ("accuracy", "ece", "nll", "mean_confidence"):
        assert shown[m][0] == pytest.approx(groups[m][0], abs=1e-6), m
    set_filter(session, "all")
    session.assert_clean()


def built_name(session: Session, store: int) -> str:
    return str(session.page.evaluate(f"layercalExplorer.doc.stores[{store}].name"))


def _question_text(session: Session) -> dict[str, Any]:
    return dict(
        session.page.evaluate(
            """() => ({
        text: document.getElementById('question-text').textContent,
        options: [...document.querySelectorAll('#question-options li')].map(e => e.textContent),
        correct: [...document.querySelectorAll('#question-options li.correct')].map(
            e => Number(e.dataset.option)),
        depths: [...document.querySelectorAll('#question-depths span')].map(e => [
            Number(e.dataset.store), Number(e.dataset.commitment), e.dataset.falls]),
        })"""
        )
    )


def _check_question(session: Session, built: Built, qid: str) -> None:
    shown = _question_text(session)
    for si, src in enumerate(built.sources):
        i = src.questions["example_id"].to_list().index(qid)
        if si == 0:
            assert shown["text"] == src.questions["question"][i]
            assert [o.rstrip(" ✓") for o in shown["options"]] == src.choices[i]
            assert shown["correct"] == [src.questions["label"][i]]
        summary = question_summary(src.result.examples["answer_logits"][[i]], src.mask[[i]])
        falls = ",".join(str(d) for d in np.flatnonzero(summary["falls"][0]))
        assert shown["depths"][si] == [si, int(summary["commitment"][0]), falls]
        probs = session.page.evaluate(
            "name => layercalExplorer.views.question.data('qprob').filter(r => r.store === name)"
            ".map(r => [r.layer, r.option, r.p])",
            built_name(session, si),
        )
        ref = option_probs(src.result.examples["answer_logits"][[i]], src.mask[[i]])[0]
        got = {(layer, opt[0]): p for layer, opt, p in probs}
        for (layer, letter), p in got.items():
            assert p == pytest.approx(ref[layer, "ABCD".index(letter)], abs=1e-12)
        assert len(got) == ref.shape[0] * src.mask[i].sum()


def test_the_question_view_shows_a_question_picked_from_the_list(session: Session, built: Built):
    src = built.sources[0]
    summary = question_summary(src.result.examples["answer_logits"], src.mask)
    # a question with a late commitment and a fall of confidence: the interesting case
    late = np.flatnonzero((summary["commitment"] > 3) & summary["falls"].any(axis=1))
    qid = src.questions["example_id"][int(late[0])]
    session.page.select_option("#question-select", qid)
    session.wait_for(question=qid)
    _check_question(session, built, qid)
    session.assert_clean()


def test_clicking_a_point_opens_its_question(session: Session, built: Built):
    # the topmost point at its own centre, so the click reaches that point
    label = session.page.evaluate(
        """() => {
        document.getElementById('chart-qpoints').scrollIntoView({block: 'center'});
        for (const e of document.querySelectorAll("#chart-qpoints path[aria-label^='store=0']")) {
            const r = e.getBoundingClientRect();
            const top = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
            if (top === e) return e.ariaLabel;
        }
        return null;
        }"""
    )
    assert label, "no point of the question chart can be clicked"
    qid = re.search(r"id=(.*)$", label).group(1)  # type: ignore[union-attr]
    session.page.locator(f"#chart-qpoints path[aria-label='{label}']").click()
    session.wait_for(question=qid)
    _check_question(session, built, qid)
    session.assert_clean()


def test_screenshot(session: Session, built: Built, tmp_path: Path):
    """The README's picture: both stores at the peak-ECE depth, a question with a correction.
    Written to docs/figures/explorer.png when LAYERCAL_UPDATE_SCREENSHOT=1."""
    src = built.sources[0]
    set_depth(session, int(src.result.landmarks["peak_miscalibration_layer"]))
    summary = question_summary(src.result.examples["answer_logits"], src.mask)
    late = np.flatnonzero((summary["commitment"] > 5) & summary["falls"][:, -1])
    qid = src.questions["example_id"][int(late[0])]
    session.page.select_option("#question-select", qid)
    session.wait_for(question=qid)
    session.page.mouse.move(0, 0)  # no tooltip
    session.page.evaluate("window.scrollTo(0, 0)")  # the sticky controls at the top
    shot = tmp_path / "explorer.png"
    session.page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000
    if os.environ.get("LAYERCAL_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, SCREENSHOT)
    session.assert_clean()


def test_the_page_holds_everything_and_names_no_remote_resource(built: Built):
    html = render_page(built.sources[:1])
    assert "default-src 'none'" in html  # the browser may not load anything
    assert not [t for t in re.findall(r"<script[^>]*>", html) if "src" in t]
    markup = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.S)  # the page's own tags
    assert not re.search(r"<(link|img|iframe|object|embed)\b", markup, re.I)
    assert not re.search(r"@@[A-Z_]+@@", html)  # every placeholder filled


def test_the_vega_bundle_is_bundled_once_then_read_from_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERCAL_CACHE_DIR", str(tmp_path))
    vega_bundle.cache_clear()
    try:
        js, versions = vega_bundle()
        (kept,) = (tmp_path / "derived").glob("vega-embed-*.js")
        assert "window.vegaEmbed" in js and "</script" not in js and versions["vegalite"]
        kept.write_text("// kept", encoding="utf-8")
        vega_bundle.cache_clear()
        assert vega_bundle()[0] == "// kept"  # read back, not bundled again
    finally:
        vega_bundle.cache_clear()
