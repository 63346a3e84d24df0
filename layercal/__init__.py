"""layercal: how a language model's confidence evolves through its layers.

Two stages share one store format (:mod:`layercal.format`): ``extract`` (needs torch and the
model) writes activation stores; ``analyze`` (CPU only, never imports torch) reads them.
"""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

__version__ = "0.1.0"


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The git commit of this checkout (with a ``-dirty`` suffix), or None when not in git."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None
