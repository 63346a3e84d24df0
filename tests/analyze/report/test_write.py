"""analyze/report/write.py: report.html (self-contained) and report.md, one store or several."""

from __future__ import annotations

import base64
import re

import pytest

from analyze.report.numbers import ci, num
from analyze.report.write import write_report


def test_html_report_is_self_contained(single_report, rising):
    html = single_report.read_text(encoding="utf-8")
    assert single_report.name == "report.html"
    for external in ('src="http', "src='http", "<link", "@import", "url(http", "<script"):
        assert external not in html
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len(srcs) == 6 and all(s.startswith("data:image/png;base64,") for s in srcs)
    png = base64.b64decode(srcs[0].split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    lm, cp = rising.landmarks, rising.landmarks["correction_phase"]
    assert rising.meta["store_hash"] in html
    assert f"<td>{lm['rise_layer']}</td>" in html and f"<td>{lm['plateau_layer']}</td>" in html
    assert f"<td>{lm['peak_miscalibration_layer']}</td>" in html
    assert f"<td>{cp['start']} → {cp['end']}</td>" in html
    assert f"<td>{num(cp['delta_ece'])}</td>" in html
    assert ci(cp["delta_ece_lo"], cp["delta_ece_hi"]) in html
    assert "a confidence correction phase" in html
    assert "&lt;mmlu &amp; &#x27;friends&#x27;&gt;" in html and "<mmlu" not in html
    assert html.count("<tr class='hl'>") >= 3  # landmark rows of the per-layer table


def test_markdown_report_links_the_figures(single_report):
    md = (single_report.parent / "report.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\((figures/[^)]+\.(?:png|svg))\)", md)
    assert "figures/metrics_over_depth.png" in links and len(links) == 12
    assert all((single_report.parent / link).is_file() for link in links)
    assert "| rise |" in md and "| layer | accuracy | ECE |" in md


def test_the_report_links_the_explorer_in_its_folder(single_report, rising, tmp_path):
    html = single_report.read_text(encoding="utf-8")
    assert "layercal explore STORE" in html and 'href="explorer.html"' not in html
    (tmp_path / "explorer.html").write_text("<!DOCTYPE html>")
    write_report([rising], tmp_path)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert '<p><a href="explorer.html">Open the interactive explorer' in html
    assert "[Open the interactive explorer (explorer.html)" in md and "](explorer.html)" in md


def test_several_stores_side_by_side(multi_report, rising):
    assert multi_report.name == "report.md" and multi_report.is_file()
    html = (multi_report.parent / "report.html").read_text(encoding="utf-8")
    assert "Side by side" in html and "2 stores compared" in html
    assert html.count("synthetic-1b") >= 3 and html.count("synthetic-7b") >= 3
    assert rising.meta["store_hash"] in html
    figs = {p.name for p in (multi_report.parent / "figures").iterdir()}
    for i, label in ((1, "synthetic-7b"), (2, "synthetic-1b")):
        assert f"reliability_grid_{i}-{label}.png" in figs
        assert f"confidence_hist_{i}-{label}.svg" in figs
    assert "by_category_1-synthetic-7b.png" in figs and "by_category_2-synthetic-1b.png" not in figs
    assert "metrics_over_depth.png" in figs  # one overlaid figure for both
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == 2 + 4 + 3


def test_write_report_rejects_unknown_format(tmp_path, rising):
    with pytest.raises(ValueError, match="fmt"):
        write_report([rising], tmp_path, fmt="pdf")
    assert not (tmp_path / "figures").exists()
