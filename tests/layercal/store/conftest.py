"""The reference store of the store-tool tests (complete, three blocks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.layercal.store.fixtures import LAYOUT, build


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("ref") / "ref.zarr", range(LAYOUT.n_blocks))
