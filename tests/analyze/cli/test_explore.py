"""`layercal explore`: from the cache of `layercal analyze` when there is one; errors exit 1
with a message and write nothing."""

from __future__ import annotations

import shutil

import pytest

from analyze.cli import main as layercal
from tests.analyze.planted import make_store, random_logits


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    z, label = random_logits(n=130, n_layers=4, seed=5)
    return make_store(tmp_path_factory.mktemp("cli") / "p.zarr", z, label)


def test_explore_reads_the_analysis_cache_of_the_report_folder(store, tmp_path, capsys):
    report = tmp_path / "report"
    assert layercal(["analyze", str(store), "--out", str(report), "--n-boot", "50"]) == 0
    local = tmp_path / "copy.zarr"
    shutil.copytree(store, local)
    assert layercal(["analyze", str(local), "--out", str(report), "--n-boot", "50"]) == 0
    shutil.rmtree(local / "resid" / "c")  # the page can only come from the cache now
    capsys.readouterr()
    page = report / "explorer.html"
    assert layercal(["explore", str(local), "-o", str(page), "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    assert "130 questions (from cache)" in out and f"explorer: {page.resolve()}" in out
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert not list(report.glob(".explorer.html.tmp"))


def test_a_missing_store_or_lens_folder_exits_1_and_writes_nothing(store, tmp_path, capsys):
    page = tmp_path / "explorer.html"
    assert layercal(["explore", str(tmp_path / "none.zarr"), "-o", str(page)]) == 1
    assert "no layercal store" in capsys.readouterr().err
    args = ["explore", str(store), "-o", str(page), "--lens", str(tmp_path), "--no-cache"]
    assert layercal(args) == 1
    assert "is not a lens folder (no lens.json)" in capsys.readouterr().err
    assert not page.exists()


def test_help_says_where_the_numbers_come_from(capsys):
    with pytest.raises(SystemExit):
        layercal(["explore", "--help"])
    text = capsys.readouterr().out
    assert "dirname(OUT)/.cache" in text and "--lens DIR" in text and "no network" in text
