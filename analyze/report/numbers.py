"""Numbers as every report, section and table prints them: one convention, written once.

- a missing value (None, NaN, ±inf) is an em dash ``—`` (:data:`MISSING`);
- a negative number has the true minus sign U+2212 (:data:`MINUS`), a signed one a ``+`` too;
- a range of layers or depths is joined by an en dash: ``3–7`` (:func:`span`);
- a value with its interval is ``value [lo, hi]`` in a table cell (:func:`with_ci`) and
  ``95% CI [lo, hi]`` in a sentence (:func:`ci`).

Used by the analysis report (:mod:`~analyze.report.findings`, :mod:`~analyze.report.tables`),
the intervention and neuron sections and ``scripts/compare_findings.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

MINUS = "\u2212"
MISSING = "\u2014"  # em dash
RANGE = "\u2013"  # en dash


def missing(x: Any) -> bool:
    """True for None and for a number that is not finite (NaN, ±inf)."""
    if x is None:
        return True
    try:
        return not math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _minus(text: str) -> str:
    """The leading sign as U+2212 (an exponent's sign, ``1e-05``, stays as written)."""
    return MINUS + text[1:] if text.startswith("-") else text


def num(x: Any, digits: int | None = None, *, signed: bool = False, spec: str = "") -> str:
    """A number: ``digits`` decimals (None: 2, or 3 below 0.1 — ECE of a good model), a ``+``
    on positive values when ``signed``; ``spec`` a format spec instead (``"g"``, ``".3g"``).
    Integers (not floats) print as they are, whatever ``digits``."""
    if missing(x):
        return MISSING
    if isinstance(x, int) and not isinstance(x, bool) and not spec:
        text = f"{x:+d}" if signed else str(x)
    else:
        v = float(x)
        if not spec:
            d = digits if digits is not None else (2 if abs(v) >= 0.1 else 3)
            spec = f"{'+' if signed else ''}.{d}f"
        text = format(v, spec)
    return _minus(text)


def pct(x: Any, *, trim: bool = False) -> str:
    """A proportion as a percentage with one decimal (``0.265`` -> ``26.5%``); ``trim`` drops a
    trailing ``.0`` (``0.25`` -> ``25%``, for round numbers such as chance)."""
    if missing(x):
        return MISSING
    s = f"{100 * float(x):.1f}"
    return _minus(s[:-2] if trim and s.endswith(".0") else s) + "%"


def ci(lo: Any, hi: Any, fmt: Callable[[Any], str] = num) -> str:
    """``95% CI [lo, hi]``, or an empty string when the interval is missing."""
    if missing(lo) or missing(hi):
        return ""
    return f"95% CI [{fmt(lo)}, {fmt(hi)}]"


def interval(v: Any, lo: Any, hi: Any, digits: int | None = 3, *, signed: bool = False) -> str:
    """``value [lo, hi]`` (the value alone without both ends; :data:`MISSING` without it)."""
    if missing(v):
        return MISSING
    text = num(v, digits, signed=signed)
    if missing(lo) or missing(hi):
        return text
    return f"{text} [{num(lo, digits, signed=signed)}, {num(hi, digits, signed=signed)}]"


def with_ci(
    row: Mapping[str, Any] | None, name: str, digits: int | None = 3, signed: bool = False
) -> str:
    """:func:`interval` of ``row[name]``, ``row[name_lo]``, ``row[name_hi]``; a missing row or
    value is :data:`MISSING`."""
    if not row:
        return MISSING
    return interval(
        row.get(name), row.get(f"{name}_lo"), row.get(f"{name}_hi"), digits, signed=signed
    )


def span(a: Any, b: Any) -> str:
    """A range of layers or depths: ``a–b``."""
    return f"{a}{RANGE}{b}"
