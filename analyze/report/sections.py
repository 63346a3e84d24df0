"""The sections of ``nullspace``, ``direction fit``, ``steer`` and ``neurons`` inside an analysis
report.

``layercal analyze --out R`` includes every section folder ``R/<folder>/`` (one holding the
``section.md`` such a command wrote with ``--out R/<folder>``) in its report, so one HTML file
carries the whole experiment. The section is built again as document blocks from the folder's
tables and figures (:mod:`analyze.report.intervention_sections` and
:mod:`analyze.report.steer_section`, the builders the commands
render ``section.md`` with), never parsed back from Markdown.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from analyze.report.intervention_sections import Paths, direction_blocks, nullspace_blocks
from analyze.report.neuron_section import neuron_section
from analyze.report.render import Block, Heading, Para
from analyze.report.steer_section import steer_blocks

SECTION = "section.md"


def figures_of(folder: Path) -> Paths:
    """The figures written in ``folder/figures``: {name: {"png": path, "svg": path}} ("svg"
    only where that file exists)."""
    out: Paths = {}
    for png in sorted((folder / "figures").glob("*.png")):
        svg = png.with_suffix(".svg")
        out[png.stem] = {"png": png, **({"svg": svg} if svg.is_file() else {})}
    return out


def _json(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def _csv(path: Path) -> pl.DataFrame:
    """A table a command wrote; an empty file (no rows, e.g. no transfer target) is empty."""
    return pl.read_csv(path) if path.stat().st_size else pl.DataFrame()


def _nullspace(folder: Path) -> list[Block]:
    meta = _json(folder / "meta.json")
    ablation, share = _csv(folder / "ablation.csv"), _csv(folder / "share.csv")
    return nullspace_blocks(ablation, share, meta, figures_of(folder))


def _direction(folder: Path) -> list[Block]:
    return direction_blocks(_json(folder / "direction.json"), figures_of(folder))


def _steer(folder: Path) -> list[Block]:
    meta = _json(folder / "meta.json")
    table, transfer = _csv(folder / "steering.csv"), _csv(folder / "transfer.csv")
    contrasts = folder / "contrasts.csv"
    extra = _csv(contrasts) if contrasts.is_file() else None
    return steer_blocks(table, transfer, meta, figures_of(folder), extra)


def _neurons(folder: Path) -> list[Block]:
    """``layercal neurons``: blocks.csv always, neurons.csv and sets.csv with a capture."""
    meta = _json(folder / "meta.json")
    has = (folder / "neurons.csv").is_file() and (folder / "sets.csv").is_file()
    neurons = _csv(folder / "neurons.csv") if has else None
    sets = _csv(folder / "sets.csv") if has else None
    return neuron_section(_csv(folder / "blocks.csv"), meta, neurons, sets, figures_of(folder))


# the report's order; a kind is recognised by the files its command writes
KINDS: tuple[tuple[str, tuple[str, ...], Callable[[Path], list[Block]]], ...] = (
    ("nullspace", ("ablation.csv", "share.csv", "meta.json"), _nullspace),
    ("direction", ("direction.json",), _direction),
    ("steer", ("steering.csv", "transfer.csv", "meta.json"), _steer),
    ("neurons", ("blocks.csv", "meta.json"), _neurons),
)


def find_sections(out: Path) -> list[tuple[Path, Callable[[Path], list[Block]]]]:
    """Section folders under ``out`` with their builder: null space first, then directions, then
    steering, then neurons (by folder name within a kind). Folders of no known kind are left
    out."""
    found = []
    for path in Path(out).glob(f"*/{SECTION}"):
        folder = path.parent
        for rank, (_, files, build) in enumerate(KINDS):
            if all((folder / f).is_file() for f in files):
                found.append((rank, folder.name, folder, build))
                break
    return [(folder, build) for _, _, folder, build in sorted(found, key=lambda x: x[:2])]


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


def section_blocks(out: Path, store_hashes: set[str], shift: int = 1) -> list[Block]:
    """Blocks of every section found under ``out``, headings ``shift`` levels deeper, each with
    where it came from. A section whose folder records a ``store_hash`` none of
    ``store_hashes`` gets a warning line: it was computed on another store than the one this
    report analyses."""
    blocks: list[Block] = []
    for folder, build in find_sections(out):
        parsed = [
            Heading(min(6, b.level + shift), b.text) if isinstance(b, Heading) else b
            for b in build(folder)
        ]
        head, rest = parsed[:1], parsed[1:]
        note = f"From {folder.name}/{SECTION}."
        other = section_store_hashes(folder) - store_hashes
        if other:
            note += f" Computed on store {', '.join(sorted(other))}, not a store of this report."
        blocks += [*head, Para(note, css="muted"), *rest]
    return blocks
