"""analyze/report/render.py: the document model rendered to HTML, escaped."""

from __future__ import annotations

from analyze.report.render import Heading, Para, Table, to_html


def test_render_escapes_everything():
    page = to_html([Heading(2, "<h>"), Para("a < b & c"), Table(["<th>"], [["<td>"]])], "<t>")
    assert "<h>" not in page.replace("<html", "").replace("<head", "")
    assert "&lt;t&gt;" in page and "a &lt; b &amp; c" in page and "&lt;td&gt;" in page
    assert "<tr class='hl'>" not in page
