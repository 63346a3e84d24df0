"""``layercal summary``: the table, and its lens check with the store's dtype tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.cli import main as cli_main
from layercal.lens import NormSpec, self_check_tolerance
from layercal.testing import example_meta, lens_block, synthetic_store

N, L, D, V = 64, 4, 16, 40
IDS = np.array([3, 4, 5, 6])


def store_with_offset(path, dtype: str, offset: float):
    """A store whose recorded lens logits are the lens's plus ``offset``, as a model that
    rounds its own final norm and unembedding (bf16) records them."""
    rng = np.random.default_rng(0)
    w_u = rng.normal(size=(V, D)).astype(np.float32)
    norm = NormSpec("rmsnorm", np.ones(D, np.float32), None, 1e-5)
    resid = rng.normal(size=(N, L, D)).astype(np.float32)

    def block(b, sl):
        arrays = lens_block(resid[sl], w_u, norm, IDS)
        arrays["lens_logits"] = arrays["lens_logits"] + offset
        return arrays

    meta = example_meta(rng.integers(0, 4, N), ["s"] * N)
    ident = {"model": "synthetic", "dataset": "synthetic", "split": "test", "dtype": dtype}
    return synthetic_store(
        path, meta=meta, n_depth=L, w_u=w_u, norm=norm, answer_ids=IDS, blocks=block,
        identity=ident, block=128,
    )  # fmt: skip


def test_summary_prints_a_row_per_layer(tmp_path, capsys):
    store = store_with_offset(tmp_path / "s.zarr", "float32", 0.0)
    assert cli_main(["summary", str(store)]) == 0
    out = capsys.readouterr().out
    assert "4 depths" in out and out.count("\n") == L + 3
    assert "max |diff| = " in out


def test_summary_accepts_a_bf16_store_within_its_tolerance(tmp_path, capsys):
    """Recorded and recomputed lens logits differ by 0.01: beyond float32's 1e-3, within the
    bf16 bound (0.05 + 2% of the largest logit) that `store verify` and the analysis use."""
    assert self_check_tolerance("float32", np.zeros(1)) < 0.01 < 0.05
    bf16 = store_with_offset(tmp_path / "bf16.zarr", "bfloat16", 0.01)
    assert cli_main(["summary", str(bf16)]) == 0, capsys.readouterr().err
    fp32 = store_with_offset(tmp_path / "fp32.zarr", "float32", 0.01)
    assert cli_main(["summary", str(fp32)]) == 1
    assert "differ from those recorded at extraction by 0.01 (> 0.001)" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_summary_refuses_a_store_beyond_its_tolerance(tmp_path, capsys, dtype):
    store = store_with_offset(tmp_path / "s.zarr", dtype, 1.0)
    assert cli_main(["summary", str(store)]) == 1
    assert "layercal store verify" in capsys.readouterr().err
