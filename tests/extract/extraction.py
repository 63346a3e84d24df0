"""The tiny-model extraction the run tests and the reliability suite share: its command line
(``python -m extract ...``), a runner, and the store's arrays."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import zarr

from layercal import format as fmt
from tests import REPO

ACT = [*fmt.ACTIVATION_ARRAYS, "block_sha256", "written"]


def cli(model_dir, out, data_dir, *extra, limit=640):
    return [
        sys.executable,
        "-m",
        "extract",
        "--model",
        str(model_dir),
        "--dataset",
        "mmlu",
        "--category",
        "stem",
        "--limit",
        str(limit),
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        "--block-size",
        "128",
        "--batch-size",
        "8",
        "--no-progress",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        *extra,
    ]


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600, **kw)


def arrays(path):
    g = zarr.open_group(str(path), mode="r")
    return {k: np.asarray(g[k][...]) for k in ACT}
