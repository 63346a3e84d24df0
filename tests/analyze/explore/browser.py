"""A real headless Chromium (Debian's ``chromium``, installed by ``make browser``) driven by
Playwright for Python, recording every request and console message of the pages it opens.

No browser is ever downloaded: Playwright launches the system's ``/usr/bin/chromium``. Where it
or Playwright is missing the tests that need it fail with a message saying how to install it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("LAYERCAL_CHROMIUM", "/usr/bin/chromium")
# without the background-networking flags Chromium tries to reach Google's services
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL = ("file://", "data:", "blob:", "about:")


@dataclass
class Session:
    """One open page and what it did: every request URL, console message and page error."""

    page: Any
    requests: list[str] = field(default_factory=list)
    console: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        """No request but to local files or data, no console error, no uncaught exception."""
        remote = [u for u in self.requests if not u.startswith(LOCAL)]
        assert not remote, f"the page made network requests: {remote}"
        bad = [text for kind, text in self.console if kind == "error"]
        assert not bad and not self.errors, f"console errors: {bad}, page errors: {self.errors}"

    def state(self) -> dict[str, Any]:
        text = self.page.evaluate("document.body.dataset.state || '{}'")
        return dict(json.loads(text))

    def wait_for(self, **want: Any) -> dict[str, Any]:
        """Wait until the page has drawn a state with these values; returns the state."""
        cond = " && ".join(f"s[{json.dumps(k)}] === {json.dumps(v)}" for k, v in want.items())
        self.page.wait_for_function(
            "() => { const t = document.body.dataset.state; if (!t) return false; "
            f"const s = JSON.parse(t); return {cond or 'true'}; }}",
            timeout=60_000,
        )
        return self.state()


def require_chromium() -> None:
    """Fail (never skip) when the browser or its driver library is missing."""
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.fail(
            f"Chromium is not installed ({CHROMIUM} not found): the explorer's browser tests need "
            "Debian's chromium. Install it with `make browser` (as root, or with sudo), i.e. "
            "`apt-get install -y chromium chromium-driver`, or set LAYERCAL_CHROMIUM to a "
            "Chromium binary"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("playwright is not installed: `make venv` (pip install -e '.[dev]')")


@contextmanager
def open_page(path: Path, profile: Path, width: int = 1400) -> Iterator[Session]:
    """``path`` opened from file:// in a fresh Chromium profile; waits for the first drawing."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": width, "height": 1000},
        )
        try:
            page = ctx.new_page()
            s = Session(page)
            page.on("request", lambda r: s.requests.append(r.url))
            page.on("console", lambda m: s.console.append((m.type, m.text)))
            page.on("pageerror", lambda e: s.errors.append(str(e)))
            page.goto(path.resolve().as_uri())
            s.wait_for(renders=1)
            yield s
        finally:
            ctx.close()
