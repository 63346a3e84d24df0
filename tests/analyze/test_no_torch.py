"""`analyze` (and the store format) work without torch or transformers installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests import REPO

BLOCK = textwrap.dedent(
    """
    import importlib, pkgutil, sys

    class Block:  # behave as if torch and transformers were not installed
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "transformers"):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by test)")
            return None

    sys.meta_path.insert(0, Block())
    import analyze, layercal.format, layercal.lens
    for m in pkgutil.walk_packages(analyze.__path__, "analyze."):
        importlib.import_module(m.name)
    """
)


def test_analyze_imports_without_torch():
    code = (
        BLOCK
        + "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_summary_command_runs_without_torch(tmp_path):
    code = BLOCK + "from analyze.cli import main; raise SystemExit(main(['summary', '--help']))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0, p.stderr
    assert "--allow-partial" in p.stdout
