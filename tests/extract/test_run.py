"""Extraction end to end on a tiny model: store contents, resume after SIGKILL, shards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr
import zarr

from layercal import format as fmt
from layercal.lens import lens_logits
from tests import REPO
from tests.extract.extraction import ACT, arrays, cli, run


@pytest.fixture(scope="module")
def reference_store(tmp_path_factory, tiny_llama_dir, data_dir):
    out = tmp_path_factory.mktemp("ref") / "ref.zarr"
    p = run(cli(tiny_llama_dir, out, data_dir))
    assert p.returncode == 0, p.stderr
    assert "complete:   yes" in p.stdout and "passed" in p.stdout
    return out


def test_store_is_labelled_and_lens_reproduces_logits(reference_store):
    ds = xr.open_zarr(reference_store)
    assert ds["resid"].dims == ("example", "layer", "hidden")
    assert ds.sizes["layer"] == 5 and ds.sizes["hidden"] == 128 and ds.sizes["example"] == 640
    assert ds["lens_logits"].dims == ("example", "layer", "choice")
    assert list(ds["choice"].values) == ["A", "B", "C", "D"]
    assert set(np.unique(ds["category"].values)) == {"stem"}
    assert ds["example_id"].values[0].startswith("mmlu/test/")
    info = ds.attrs["layercal"]
    assert info["status"]["complete"] and info["format_version"] == fmt.FORMAT_VERSION
    assert info["identity"]["w_u_sha256"] == fmt.sha256_bytes(ds["W_U"].values)
    for key in ("model", "dataset", "template", "libraries"):
        assert key in info["provenance"]
    tpl = info["provenance"]["template"]
    assert "The following are multiple choice" in tpl["text"] and len(tpl["sha256"]) == 64
    assert tpl["first_prompt"].endswith("\nAnswer:")
    g = zarr.open_group(str(reference_store), mode="r")
    spec = fmt.norm_spec(g)
    ids = ds["answer_token_ids"].values
    z = lens_logits(ds["resid"].values, ds["W_U"].values[ids], spec)
    np.testing.assert_allclose(z[:, -1], ds["model_logits"].values, atol=1e-3)
    np.testing.assert_allclose(z, ds["lens_logits"].values, atol=1e-3)
    assert np.isfinite(ds["lens_lse"].values).all()
    assert (ds["lens_lse"].values >= ds["lens_logits"].values.max(-1) - 1e-4).all()
    # lse and entropy over the whole vocabulary, recomputed from the stored resid (float64)
    rows = np.arange(0, 640, 10)
    full = lens_logits(ds["resid"].values[rows], ds["W_U"].values, spec)  # (64, L, V)
    top = full.max(-1, keepdims=True)
    lse = np.log(np.exp(full - top).sum(-1)) + top[..., 0]
    p = np.exp(full - lse[..., None])
    entropy = -(p * np.log(p)).sum(-1)
    assert ds["lens_entropy"].dims == ("example", "layer")
    assert "example_id" in ds["lens_entropy"].coords
    np.testing.assert_allclose(ds["lens_lse"].values[rows], lse, rtol=1e-5)
    np.testing.assert_allclose(ds["lens_entropy"].values[rows], entropy, rtol=1e-4)
    # a random model is near uniform: its distance from log V is what tells rows apart
    deficit = np.log(full.shape[-1]) - entropy
    assert deficit.min() > 1e-3 and deficit.std() > 1e-3
    stored = np.log(full.shape[-1]) - ds["lens_entropy"].values[rows]
    np.testing.assert_allclose(stored, deficit, rtol=1e-3)
    # chunking contract: read unit 128 examples x 1 layer; shard = one block; W_U by vocab
    assert g["resid"].chunks == (128, 1, 128) and g["resid"].shards == (128, 5, 128)
    assert g["W_U"].chunks[1] == 128


def _wait_for_partial(path, proc, timeout=300):
    """Poll until at least one block but not all is written."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            return False
        try:
            w = np.asarray(zarr.open_group(str(path), mode="r")["written"][...])
            if 0 < w.sum() < w.size:
                return True
        except Exception:
            pass
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("delay", [0.0, 0.15])
def test_resume_after_sigkill_is_byte_identical(
    tmp_path, tiny_llama_dir, data_dir, reference_store, delay
):
    out = tmp_path / "killed.zarr"
    proc = subprocess.Popen(
        cli(tiny_llama_dir, out, data_dir),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    hit = _wait_for_partial(out, proc)
    time.sleep(delay)  # kill at different points: between and during block writes
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert hit, "the run finished before it could be killed: make the test workload larger"
    g = zarr.open_group(str(out), mode="r")
    assert not g.attrs["layercal"]["status"]["complete"]
    p = run(cli(tiny_llama_dir, out, data_dir))
    assert p.returncode == 1 and "already exists" in p.stderr and "--resume" in p.stderr
    p = run(cli(tiny_llama_dir, out, data_dir, "--resume"))
    assert p.returncode == 0, p.stderr
    a, b = arrays(out), arrays(reference_store)
    for k in ACT:
        assert np.array_equal(a[k], b[k]), k
    assert not list(out.rglob("*.partial"))


def test_two_shards_concurrently_equal_one_process(
    tmp_path, tiny_llama_dir, data_dir, reference_store
):
    out = tmp_path / "sharded.zarr"
    procs = [
        subprocess.Popen(
            cli(tiny_llama_dir, out, data_dir, "--shard", f"{i}/2"),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    a, b = arrays(out), arrays(reference_store)
    for k in ACT:
        assert np.array_equal(a[k], b[k]), k
    assert zarr.open_group(str(out), mode="r").attrs["layercal"]["status"]["complete"]


def test_resume_with_another_dataset_is_refused_and_store_unchanged(
    tmp_path, tiny_llama_dir, data_dir, reference_store
):
    import shutil

    out = tmp_path / "copy.zarr"
    shutil.copytree(reference_store, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    cmd = cli(tiny_llama_dir, out, data_dir, "--resume")
    cmd[cmd.index("stem")] = "humanities"
    p = run(cmd)
    assert p.returncode == 1
    assert "refusing to resume" in p.stderr and "dataset_sha256" in p.stderr
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert before == after


def test_python_dash_m_extract_help():
    p = run([sys.executable, "-m", "extract", "--help"])
    assert p.returncode == 0 and "--shard" in p.stdout and "--resume" in p.stdout
    env = dict(os.environ)
    p = run([sys.executable, "-m", "layercal.cli", "extract", "--help"], env=env)
    assert p.returncode == 0 and "--subjects" in p.stdout


@pytest.mark.parametrize("extra", [["--dtype", "bfloat16"], ["--device-map", "auto"]])
def test_bf16_exact_and_device_map(tmp_path, tiny_llama_dir, data_dir, extra):
    """bf16 activations are stored exactly (float32 holds every bf16 value); device_map="auto"
    loads through accelerate and still captures only final-token rows."""
    import torch

    from extract.cli import main as extract_main

    out = tmp_path / "s.zarr"
    args = cli(tiny_llama_dir, out, data_dir, limit=24)[3:]
    args = [a for a in args if a not in ("--dtype", "float32")] + extra
    assert extract_main(args) == 0
    ds = xr.open_zarr(out)
    resid = torch.from_numpy(ds["resid"].values)
    if "bfloat16" in extra:
        assert ds.attrs["layercal"]["identity"]["dtype"] == "bfloat16"
        assert torch.equal(resid.to(torch.bfloat16).float(), resid)
    else:
        assert ds.attrs["layercal"]["provenance"]["model"]["device"] == "device_map=auto"
    assert resid.shape == (24, 5, 128) and torch.isfinite(resid).all()


def test_truthfulqa_variable_choices(tmp_path, tiny_llama_dir, data_dir):
    """TruthfulQA MC1: options shuffled with a seed, variable count kept in choice_mask."""
    from extract.cli import main as extract_main

    out = tmp_path / "tqa.zarr"
    args = [
        "--model",
        str(tiny_llama_dir),
        "--dataset",
        "truthfulqa-mc1",
        "--split",
        "validation",
        "--limit",
        "40",
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        "--no-progress",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--block-size",
        "128",
    ]
    assert extract_main(args) == 0
    ds = xr.open_zarr(out)
    mask = ds["choice_mask"].values
    K = ds.sizes["choice"]
    assert mask.sum(1).max() == K and mask.sum(1).min() < K  # variable option counts
    assert len(ds["answer_token_ids"]) == K
    label = ds["label"].values
    assert mask[np.arange(len(label)), label].all()
    assert len(set(label.tolist())) > 1  # the true answer is not always first after shuffling
    texts = ds["choice_text"].values
    assert (texts[~mask] == "").all() and (texts[mask] != "").all()


def test_token_budget_changes_batches_not_results(
    tmp_path, tiny_llama_dir, data_dir, reference_store
):
    """A store written with a tight budget (batches of one or two prompts) equals the reference
    (batch 8, no budget on this tiny model's short prompts) to float32 rounding, and records it."""
    out = tmp_path / "budget.zarr"
    p = run(cli(tiny_llama_dir, out, data_dir, "--max-batch-tokens", "64"))
    assert p.returncode == 0, p.stderr
    a, b = arrays(out), arrays(reference_store)
    for k in a:
        if a[k].dtype.kind != "f":
            continue
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-4, err_msg=k)
    runs = zarr.open_group(str(out), mode="r").attrs["layercal"]["runs"]
    assert runs[-1]["max_batch_tokens"] == 64
    bad = run(cli(tiny_llama_dir, tmp_path / "bad.zarr", data_dir, "--max-batch-tokens", "lots"))
    assert bad.returncode == 2 and "--max-batch-tokens" in bad.stderr
    assert not (tmp_path / "bad.zarr").exists()


def test_a_capture_store_written_in_two_shards_equals_one_process(
    tmp_path, tiny_llama_dir, data_dir
):
    """--capture mlp_last resumes and shards like every other array: two shards one after the
    other (the second joins the first's store) give the bytes of one process."""
    one, two = tmp_path / "one.zarr", tmp_path / "two.zarr"
    p = run(cli(tiny_llama_dir, one, data_dir, "--capture", "mlp_last", limit=256))
    assert p.returncode == 0, p.stderr
    for i in range(2):
        p = run(
            cli(
                tiny_llama_dir,
                two,
                data_dir,
                "--capture",
                "mlp_last",
                "--shard",
                f"{i}/2",
                limit=256,
            )
        )
        assert p.returncode == 0, p.stderr
    a, b = arrays(one), arrays(two)
    ga, gb = (zarr.open_group(str(x), mode="r") for x in (one, two))
    for k in ACT:
        assert np.array_equal(a[k], b[k]), k
    for k in ("mlp_last", "w_out_last"):
        assert np.array_equal(ga[k][...], gb[k][...]), k
    assert ga["mlp_last"].shape == (256, 256) and np.isfinite(ga["mlp_last"][...]).all()
    assert gb.attrs["layercal"]["status"]["complete"]
