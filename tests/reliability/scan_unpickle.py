"""Find every way layercal's own code could unpickle: ``python scan_unpickle.py ROOT``.

Prints a JSON list of ``path:line: what`` (empty when clean). Run as a separate process by the
reliability suite (CPython 3.11's ``ast.parse`` is not safe next to other threads).
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

PACKAGES = ("layercal", "extract", "analyze")
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve"}


def _const(node: ast.expr | None, value: bool) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def scan(root: Path) -> list[str]:
    """Imports of pickle libraries, ``read_pickle``, ``np.load`` without an explicit
    ``allow_pickle=False`` and ``torch.load`` without ``weights_only=True``."""
    problems = []
    for path in sorted(p for d in PACKAGES for p in (root / d).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = (
                    [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else [a.name for a in node.names]
                )
                if any(m.split(".")[0] in FORBIDDEN_MODULES for m in mods):
                    problems.append(f"{where}: imports {mods}")
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            kw = {k.arg: k.value for k in node.keywords}
            attr, owner = node.func.attr, ast.unparse(node.func.value)
            if attr == "read_pickle":
                problems.append(f"{where}: {owner}.read_pickle")
            if (
                attr == "load"
                and owner in ("np", "numpy")
                and not _const(kw.get("allow_pickle"), False)
            ):
                problems.append(f"{where}: np.load without allow_pickle=False")
            if attr == "load" and owner == "torch" and not _const(kw.get("weights_only"), True):
                problems.append(f"{where}: torch.load without weights_only=True")
    return problems


if __name__ == "__main__":
    print(json.dumps(scan(Path(sys.argv[1]))))
