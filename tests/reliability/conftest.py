"""Stores shared by the reliability tests, each built once per package.

``reference``: the uninterrupted run every test compares with. ``first_block``: the same
extraction with only block 0 written (``--shard 0/3``); tests get their own copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .helpers import blocks_written, extract_here


@pytest.fixture(scope="package")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path, data_dir: Path):
    out = tmp_path_factory.mktemp("reliability-ref") / "ref.zarr"
    assert extract_here(tiny_llama_dir, out, data_dir) == 0
    return out


@pytest.fixture(scope="package")
def _first_block(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path, data_dir: Path):
    out = tmp_path_factory.mktemp("reliability-block0") / "s.zarr"
    assert extract_here(tiny_llama_dir, out, data_dir, "--shard", "0/3") == 0
    assert blocks_written(out) == 1
    return out


@pytest.fixture()
def first_block(_first_block: Path, tmp_path: Path) -> Path:
    """A fresh copy of the store with block 0 written, blocks 1 and 2 not."""
    out = tmp_path / "s.zarr"
    shutil.copytree(_first_block, out)
    return out
