"""Few-shot stores with shared-prefix reuse equal stores of full prompts (tiny Llama and the real
SmolLM2); shards and resume unchanged; a model that cannot reuse falls back with a note."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from extract.run import ExtractConfig, extract
from tests.extract.extraction import ACT, arrays, cli, run

SHOTS = ["--shots", "5", "--limit", "300"]  # 3 blocks of 128 over 18 STEM subjects


def _close(reused, full) -> None:
    """The issue's bar: residuals within 1e-4 of each layer's scale, lens logits within 1e-3,
    the same predictions and labels."""
    a, b = zarr.open_group(str(reused), mode="r"), zarr.open_group(str(full), mode="r")
    ra, rb = np.asarray(a["resid"][...]), np.asarray(b["resid"][...])
    scale = np.abs(rb).max(axis=(0, 2))  # per layer
    assert (np.abs(ra - rb).max(axis=(0, 2)) <= 1e-4 * scale).all()
    za, zb = np.asarray(a["lens_logits"][...]), np.asarray(b["lens_logits"][...])
    assert np.abs(za - zb).max() <= 1e-3
    assert np.abs(a["model_logits"][...] - b["model_logits"][...]).max() <= 1e-3
    assert (za.argmax(-1) == zb.argmax(-1)).all()
    assert (a["label"][...] == b["label"][...]).all()
    for g in (a, b):
        assert g.attrs["layercal"]["status"]["complete"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory, tiny_llama_dir, data_dir):
    root = tmp_path_factory.mktemp("prefix")
    out = {"reuse": root / "reuse.zarr", "full": root / "full.zarr"}
    p = run(cli(tiny_llama_dir, out["reuse"], data_dir, *SHOTS))
    assert p.returncode == 0, p.stderr
    p = run(cli(tiny_llama_dir, out["full"], data_dir, *SHOTS, "--no-prefix-reuse"))
    assert p.returncode == 0, p.stderr
    return out


def test_reuse_equals_full_prompts_on_a_tiny_model(stores):
    _close(stores["reuse"], stores["full"])
    runs = [zarr.open_group(str(stores[k]), mode="r").attrs["layercal"]["runs"] for k in stores]
    assert runs[0][-1]["prefix_reuse"] is True and "on:" in runs[0][-1]["prefix_reuse_note"]
    assert runs[1][-1]["prefix_reuse"] is False


def test_shards_and_resume_with_reuse_are_byte_identical(
    tmp_path, stores, tiny_llama_dir, data_dir
):
    out = tmp_path / "resumed.zarr"
    p = run(cli(tiny_llama_dir, out, data_dir, *SHOTS, "--shard", "1/2"))  # blocks 1 only
    assert p.returncode == 0, p.stderr
    assert not zarr.open_group(str(out), mode="r").attrs["layercal"]["status"].get("complete")
    p = run(cli(tiny_llama_dir, out, data_dir, *SHOTS, "--resume"))  # the rest, one process
    assert p.returncode == 0, p.stderr
    a, b = arrays(out), arrays(stores["reuse"])
    for k in ACT:
        assert np.array_equal(a[k], b[k]), k


def test_a_model_that_cannot_reuse_falls_back_with_a_note(
    tmp_path, tiny_llama_dir, data_dir, capsys
):
    from extract.model.arch import resolve
    from extract.model.load import load_model

    loaded = load_model(str(tiny_llama_dir), dtype="float32", device="cpu")  # its own copy

    def refuse(_mod, args, kwargs):  # a model whose blocks cannot attend to a cache
        if kwargs.get("cache", kwargs.get("past_key_values")) is not None:
            raise NotImplementedError("no cache here")

    resolve(loaded.model).blocks[0].register_forward_pre_hook(refuse, with_kwargs=True)
    kw = dict(
        model=str(tiny_llama_dir),
        dataset="mmlu",
        subjects=["world_religions"],
        limit=12,
        shots=3,
        data_dir=str(data_dir),
        dtype="float32",
        block=128,
        batch_size=4,
        progress=False,
    )
    s = extract(ExtractConfig(out=str(tmp_path / "a.zarr"), **kw), loaded=loaded)
    assert s.complete
    err = capsys.readouterr().err
    assert "prefix reuse off, every prompt in full" in err and "no cache here" in err
    run_record = zarr.open_group(str(tmp_path / "a.zarr"), mode="r").attrs["layercal"]["runs"][-1]
    assert run_record["prefix_reuse"] is False
    full = extract(
        ExtractConfig(out=str(tmp_path / "b.zarr"), prefix_reuse=False, **kw), loaded=loaded
    )
    assert full.complete
    a, b = arrays(tmp_path / "a.zarr"), arrays(tmp_path / "b.zarr")
    for k in ACT:
        assert np.array_equal(a[k], b[k]), k


@pytest.mark.slow
def test_smollm2_five_shot_with_and_without_reuse(tmp_path, smollm2, data_dir):
    kw = dict(
        model="smollm2-135m",
        dataset="mmlu",
        subjects=["world_religions", "formal_logic"],
        per_subject="6",
        shots=5,
        data_dir=str(data_dir),
        dtype="float32",
        block=128,
        batch_size=8,
        progress=False,
    )
    a = extract(ExtractConfig(out=str(tmp_path / "reuse.zarr"), **kw), loaded=smollm2)
    b = extract(
        ExtractConfig(out=str(tmp_path / "full.zarr"), prefix_reuse=False, **kw), loaded=smollm2
    )
    assert a.complete and b.complete
    assert a.self_check_max_abs_diff < 1e-3 and b.self_check_max_abs_diff < 1e-3
    _close(tmp_path / "reuse.zarr", tmp_path / "full.zarr")
    g = zarr.open_group(str(tmp_path / "reuse.zarr"), mode="r")
    assert g.attrs["layercal"]["runs"][-1]["prefix_reuse"] is True
    assert int(np.asarray(g["n_tokens"][...]).min()) > 200  # the 5 exemplars are in the prompts
