"""Fixtures of the report tests: two synthetic analyses and the reports written from them."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from analyze.report.write import write_report
from analyze.results import AnalysisResult
from tests.analyze.report.synthetic import synthetic_result


@pytest.fixture(scope="session")
def rising() -> AnalysisResult:
    """Accuracy rises at ~60% depth, ECE peaks, then a significant correction phase."""
    return synthetic_result("correction", n_layers=20, n=600)


@pytest.fixture(scope="session")
def flat() -> AnalysisResult:
    """Accuracy at chance throughout: no landmarks after the (absent) rise."""
    return synthetic_result("flat", n_layers=12, n=400, label="guesser-1b")


@pytest.fixture(scope="session")
def single_report(tmp_path_factory, rising) -> Path:
    r = copy.deepcopy(rising)
    r.meta["template"] = "<mmlu & 'friends'>"  # must come out escaped
    return write_report([r], tmp_path_factory.mktemp("single"), n_grid=4)


@pytest.fixture(scope="session")
def multi_report(tmp_path_factory, rising) -> Path:
    other = synthetic_result("correction", n_layers=14, n=400, label="synthetic-1b", seed=1)
    other.by_group = other.by_group.clear()  # no group table: no group figure, no error
    return write_report([rising, other], tmp_path_factory.mktemp("multi"), fmt="md", n_grid=2)
