"""What ``store verify`` finds: a :class:`Report` of :class:`Problem` records (any -> exit 1)
and notes on what passed. Every check of the subpackage appends to one report."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One failed check. ``where``: the array, block or object (e.g. ``resid block 1``)."""

    where: str
    what: str


@dataclass
class Report:
    """The outcome of ``store verify``: problems (any -> exit 1) and notes on what passed."""

    store: str
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, where: str, what: str) -> None:
        self.problems.append(Problem(where, what))

    def lines(self) -> list[str]:
        head = "OK" if self.ok else f"FAILED ({len(self.problems)} problems)"
        out = [f"verify {self.store}: {head}"]
        out += [f"  FAIL {p.where}: {p.what}" for p in self.problems]
        out += [f"  ok   {n}" for n in self.notes]
        if not self.ok:
            out.append(
                "The store differs from what was written. Fetch it again from its source (the "
                "objects named above, or all of it), or re-extract it; do not analyse it as is."
            )
        return out
