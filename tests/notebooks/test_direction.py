"""notebooks/direction.ipynb runs top to bottom in a real kernel (nbclient) on a small store."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from tests.analyze.interventions.planted import planted_store
from tests import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = REPO / "notebooks" / "direction.ipynb"


@pytest.fixture
def kernel_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec for this very interpreter, first on JUPYTER_PATH (a user-wide ``python3``
    spec could point at another Python without layercal installed)."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "layercal-direction"
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "layercal test", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    return "layercal-direction"


def test_direction_notebook_runs_on_a_store(tmp_path, kernel_name, monkeypatch):
    store = planted_store(tmp_path / "planted.zarr", n=160)
    monkeypatch.setenv("LAYERCAL_STORE", str(store))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name=kernel_name,
        timeout=240,
        resources={"metadata": {"path": str(REPO / "notebooks")}},
    )
    client.execute()  # raises CellExecutionError with the failing cell's traceback
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs)
    assert f"store: {store}" in text  # LAYERCAL_STORE was honoured
    assert "window [" in text and "test ECE" in text
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 3  # null space; explained variance; α sweep and reliability
    tables = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("temperature" in t and "nullspace" in t for t in tables)
    assert any("stability" in t and "pca" in t for t in tables)


def test_direction_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert any("LAYERCAL_STORE" in c.source for c in code)
