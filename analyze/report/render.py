"""A tiny document model (headings, paragraphs, tables, figures) rendered to HTML and Markdown.

The report is built once as a list of blocks and rendered twice, so the two formats never drift.
All text is escaped here; HTML output is self-contained (inline CSS, PNGs as data URIs).
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str
    css: str = ""
    href: str = ""  # the paragraph is a link to this (relative) address


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    css: str = ""
    highlight: set[int] = field(default_factory=set)  # row indices to emphasise


@dataclass(frozen=True)
class Image:
    png: Path
    caption: str
    svg: Path | None = None


Block = Heading | Para | Bullets | Table | Image

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 max-width:1180px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}
h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}tr.hl td{background:#fff6e0}
table.layers{font-size:.78em;font-variant-numeric:tabular-nums}table.layers td{white-space:nowrap}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}.findings{background:#f3f8fc;border-left:4px solid #0072B2;
 padding:.6em 1em}.muted{color:#666;font-size:.85em}
"""


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def to_html(blocks: list[Block], title: str) -> str:
    """A standalone HTML page: no external requests, images embedded as base64 PNG."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
    ]
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{_e(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            cls = f' class="{_e(b.css)}"' if b.css else ""
            text = f'<a href="{_e(b.href)}">{_e(b.text)}</a>' if b.href else _e(b.text)
            out.append(f"<p{cls}>{text}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{_e(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            cls = f' class="{_e(b.css)}"' if b.css else ""
            head = "".join(f"<th>{_e(h)}</th>" for h in b.header)
            body = "".join(
                ("<tr class='hl'>" if i in b.highlight else "<tr>")
                + "".join(f"<td>{_e(c)}</td>" for c in row)
                + "</tr>"
                for i, row in enumerate(b.rows)
            )
            out.append(f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(b, Image):
            data = base64.b64encode(b.png.read_bytes()).decode("ascii")
            out.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{_e(b.caption)}">'
                f"<figcaption>{_e(b.caption)}</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return html.escape(text, quote=False)


def _plain(text: str) -> str:
    return text


def to_markdown(blocks: list[Block], title: str | None, base: Path, *, escape: bool = True) -> str:
    """Markdown with figures linked relative to ``base`` (the document's folder).

    ``title``: a level-1 heading first (None: none, for a section). ``escape=False`` leaves
    ``&``, ``<`` and ``>`` as they are (a section of plain text)."""
    md = _md if escape else _plain

    def cell(text: str) -> str:
        return md(text).replace("|", "\\|").replace("\n", " ")

    out = [] if title is None else [f"# {md(title)}", ""]
    for b in blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + md(b.text), ""]
        elif isinstance(b, Para):
            out += [f"[{md(b.text)}]({b.href})" if b.href else md(b.text), ""]
        elif isinstance(b, Bullets):
            out += [f"- {md(i)}" for i in b.items] + [""]
        elif isinstance(b, Table):
            out.append("| " + " | ".join(cell(h) for h in b.header) + " |")
            out.append("|" + "---|" * len(b.header))
            out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in b.rows]
            out.append("")
        elif isinstance(b, Image):
            rel = Path(os.path.relpath(b.png, base)).as_posix()
            out.append(f"![{md(b.caption)}]({rel})")
            if b.svg is not None:
                svg = Path(os.path.relpath(b.svg, base)).as_posix()
                out.append(f"*{md(b.caption)}* ([SVG]({svg}))")
            out.append("")
    return "\n".join(out)
