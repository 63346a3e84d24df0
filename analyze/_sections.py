"""The ``section.md`` files of ``nullspace``, ``direction fit`` and ``steer``, read back as blocks.

``layercal analyze --out R`` includes every ``R/<folder>/section.md`` (for instance written by
``layercal nullspace STORE --out R/nullspace``) in its report, so one HTML file carries the whole
experiment. The sections are the Markdown subset ``analyze._ablate_sections`` writes: ``#``
headings, paragraphs, ``- `` bullets, pipe tables, and figures as ``![caption](png)`` followed by
``*caption* ([SVG](svg))``. Image paths are relative to the section's folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from analyze._render import Block, Bullets, Heading, Image, Para, Table

# the report's order, by the section's first heading (folder names are the user's choice)
ORDER = ("## Null space", "## Calibration direction", "## Steering")
_IMAGE = re.compile(r"^!\[(?P<cap>[^\]]*)\]\((?P<png>[^)]+)\)$")
_SVG = re.compile(r"\(\[SVG\]\((?P<svg>[^)]+)\)\)")


def find_sections(out: Path) -> list[Path]:
    """``out/*/section.md``, null space first, then directions, then steering, then the rest."""

    def key(p: Path) -> tuple[int, str]:
        first = p.read_text(encoding="utf-8").lstrip().split("\n", 1)[0]
        rank = next((i for i, pre in enumerate(ORDER) if first.startswith(pre)), len(ORDER))
        return rank, p.parent.name

    return sorted((p for p in Path(out).glob("*/section.md") if p.is_file()), key=key)


def section_store_hashes(folder: Path) -> set[str]:
    """Store hashes recorded in the JSON files of a section's folder (``store_hash`` keys)."""
    found: set[str] = set()
    for f in folder.glob("*.json"):
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("store_hash"), str):
            found.add(data["store_hash"])
    return found


def _cells(line: str) -> list[str]:
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def parse_section(path: Path, shift: int = 0) -> list[Block]:
    """Blocks of one ``section.md``; heading levels + ``shift``; image paths made absolute."""
    base = path.parent
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    para: list[str] = []
    i = 0

    def flush() -> None:
        if para:
            blocks.append(Para(" ".join(para)))
            para.clear()

    while i < len(lines):
        line = lines[i].rstrip()
        if not line.strip():
            flush()
        elif m := re.match(r"^(#{1,6})\s+(.*)$", line):
            flush()
            blocks.append(Heading(min(6, len(m.group(1)) + shift), m.group(2)))
        elif line.startswith("- "):
            flush()
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(lines[i][2:].strip())
                i += 1
            blocks.append(Bullets(items))
            continue
        elif line.startswith("|"):
            flush()
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            body = [r for r in rows[1:] if not all(set(c) <= set("-: ") for c in r)]
            blocks.append(Table(rows[0], body))
            continue
        elif m := _IMAGE.match(line.strip()):
            flush()
            svg = None
            if i + 1 < len(lines) and (s := _SVG.search(lines[i + 1])):
                svg = base / s.group("svg")
                i += 1
            png = base / m.group("png")
            if png.is_file():
                blocks.append(Image(png, m.group("cap"), svg if svg and svg.is_file() else None))
            else:
                blocks.append(Para(f"(figure missing: {png})", css="muted"))
        else:
            para.append(line.strip())
        i += 1
    flush()
    return blocks


def section_blocks(out: Path, store_hashes: set[str], shift: int = 1) -> list[Block]:
    """Blocks of every section found under ``out``, each with where it came from.

    A section whose folder records a ``store_hash`` none of ``store_hashes`` gets a warning line:
    it was computed on another store than the one this report analyses.
    """
    blocks: list[Block] = []
    for path in find_sections(out):
        parsed = parse_section(path, shift)
        head, rest = (
            (parsed[:1], parsed[1:])
            if parsed and isinstance(parsed[0], Heading)
            else (
                [Heading(2 + shift - 1, path.parent.name)],
                parsed,
            )
        )
        note = f"From {path.parent.name}/section.md."
        other = section_store_hashes(path.parent) - store_hashes
        if other:
            note += f" Computed on store {', '.join(sorted(other))}, not a store of this report."
        blocks += [*head, Para(note, css="muted"), *rest]
    return blocks
