"""The package API for notebooks: ``import analyze`` is cheap and torch-free, its names load on
first use, and the module paths earlier docs and notebooks showed still import."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys

import pytest

import analyze
from tests import REPO


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)


def test_import_analyze_is_cheap_and_its_names_load_without_torch():
    code = (
        "import sys, analyze\n"
        "heavy = [m for m in ('xarray', 'dask', 'polars', 'matplotlib', 'zarr') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "analyze.open_store, analyze.analyze_store, analyze.write_report, analyze.run_steering\n"
        "bad = [m for m in ('torch', 'transformers', 'extract') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    res = _run(code)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("name", analyze.__all__)
def test_each_public_name_is_its_module_s_object(name):
    value = getattr(analyze, name)
    # a class or a function names its module; the one constant, COMMANDS, is the CLI package's
    home = importlib.import_module(getattr(value, "__module__", "analyze.cli"))
    assert getattr(home, name) is value
    assert name in dir(analyze)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'open_stor'"):
        analyze.open_stor  # noqa: B018


@pytest.mark.parametrize("old, new", sorted(analyze.MOVED.items()))
def test_the_module_paths_of_earlier_docs_still_import_with_a_warning(old, new, monkeypatch):
    """``from analyze.store import open_store`` (docs/sharing.md until now, and every dataset
    card `layercal store publish` wrote before) is the module at its new home, which keeps its
    spec; importing it warns with the path to use instead."""
    monkeypatch.delitem(sys.modules, old, raising=False)  # a first import, which warns
    with pytest.warns(DeprecationWarning, match=rf"{re.escape(old)} is deprecated.*import {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert module.__spec__ is not None and module.__spec__.name == new


def test_from_the_old_path_import_a_name(monkeypatch):
    monkeypatch.delitem(sys.modules, "analyze.store", raising=False)
    with pytest.warns(DeprecationWarning, match="analyze.lens.store"):
        from analyze.store import open_store
    from analyze.direction import fit_direction

    assert open_store is analyze.open_store and fit_direction is analyze.fit_direction
