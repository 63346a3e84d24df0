"""notebooks/figure1.ipynb runs top to bottom in a real kernel on a small synthetic store."""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from layercal import format as fmt
from layercal.lens import NormSpec
from layercal.testing import example_meta, synthetic_store
from tests import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = REPO / "notebooks" / "figure1.ipynb"
SUBJECTS = ("formal_logic", "philosophy")


def build_store(
    path: Path, n: int = 128, depth: int = 8, hidden: int = 32, vocab: int = 64
) -> Path:
    """A complete store without a model: the residual stream drifts towards the unembedding row
    of the correct answer with depth, so accuracy rises from chance to near 1."""
    rng = np.random.default_rng(0)
    ids = np.array([10, 11, 12, 13])
    w_u = rng.normal(size=(vocab, hidden)).astype(np.float32)
    spec = NormSpec("rmsnorm", np.ones(hidden, np.float32), None, 1e-5)
    label = rng.integers(0, len(ids), n)
    signal = np.linspace(0.0, 0.6, depth)[None, :, None] * w_u[ids[label]][:, None, :]
    resid = (rng.normal(size=(n, depth, hidden)) + signal).astype(np.float32)
    subject = [SUBJECTS[i % 2] for i in range(n)]
    meta = example_meta(
        label,
        subject,
        categories=["humanities"] * n,
        example_ids=[f"mmlu/test/{s}/{i}" for i, s in enumerate(subject)],
        questions=[f"question {i}?" for i in range(n)],
        choices=[["w", "x", "y", "z"]] * n,
        n_tokens=20,
    )
    identity = {
        "model": "synthetic-tiny",
        "dataset": "mmlu",
        "split": "test",
        "dtype": "float32",
        "answer_token_ids": ids.tolist(),
        "w_u_sha256": fmt.sha256_bytes(w_u),
    }
    provenance = {
        "model": {"model": "synthetic-tiny"},
        "dataset": {"name": "mmlu", "split": "test", "category": "humanities", "n_examples": n},
        "template": {"name": "lm-eval-mmlu", "text": "{question}", "sha256": "0" * 64},
        "answer_tokens": [" A", " B", " C", " D"],
    }
    return synthetic_store(
        path,
        meta=meta,
        n_depth=depth,
        w_u=w_u,
        norm=spec,
        answer_ids=ids,
        resid=resid,
        attrs={"identity": identity, "provenance": provenance},
        block=128,
        finalize={"finished": "test"},
    )


@pytest.fixture
def kernel_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec for this very interpreter, first on JUPYTER_PATH: a user-wide ``python3``
    spec could point at another Python without layercal installed."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "layercal-test"
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "layercal test", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    return "layercal-test"


def _outputs(nb, kind: str) -> list:
    return [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if kind in o.get("data", {})
    ]


def test_figure1_notebook_runs_on_a_store(tmp_path, kernel_name, monkeypatch):
    store = build_store(tmp_path / "tiny.zarr")
    monkeypatch.setenv("LAYERCAL_STORE", str(store))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name=kernel_name,
        timeout=240,
        resources={"metadata": {"path": str(REPO / "notebooks")}},
    )
    client.execute()  # raises CellExecutionError with the traceback of a failing cell
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert f"store: {store}" in text  # LAYERCAL_STORE was honoured
    assert "Accuracy" in text and "ECE" in text  # findings printed
    pngs = _outputs(nb, "image/png")
    assert len(pngs) == 3  # figure 1, the reliability grid, the last layer
    for out in pngs:
        img = mpimg.imread(io.BytesIO(base64.b64decode(out["data"]["image/png"])), format="png")
        assert img.shape[0] > 300 and img.shape[1] > 300
    table = _outputs(nb, "text/plain")[0]["data"]["text/plain"]
    assert "accuracy" in table and "mce" in table


def test_notebook_is_committed_without_outputs():
    """Outputs in the repository would go stale; the test above regenerates them."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert any("LAYERCAL_STORE" in c.source for c in code)
