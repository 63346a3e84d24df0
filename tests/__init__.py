"""The test suite, laid out like the packages it tests (tests/analyze/lens/ tests analyze/lens/)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
