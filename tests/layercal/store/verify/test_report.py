"""layercal/store/verify/report.py: what ``store verify`` prints for a clean and a bad store."""

from __future__ import annotations

from layercal.store.verify import Problem, Report


def test_a_clean_report_is_ok_and_lists_its_notes():
    rep = Report("s.zarr", notes=["3/3 blocks match"])
    assert rep.ok and rep.lines() == ["verify s.zarr: OK", "  ok   3/3 blocks match"]


def test_each_problem_is_a_line_and_the_report_says_what_to_do():
    rep = Report("s.zarr", notes=["W_U sha256 matches"])
    rep.fail("resid block 1", "sha256 differs")
    rep.fail("zarr.json", "not valid JSON")
    assert not rep.ok
    assert rep.problems == [
        Problem("resid block 1", "sha256 differs"),
        Problem("zarr.json", "not valid JSON"),
    ]
    lines = rep.lines()
    assert lines[:4] == [
        "verify s.zarr: FAILED (2 problems)",
        "  FAIL resid block 1: sha256 differs",
        "  FAIL zarr.json: not valid JSON",
        "  ok   W_U sha256 matches",
    ]
    assert "Fetch it again from its source" in lines[4] and "re-extract" in lines[4]
