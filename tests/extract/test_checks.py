"""Extraction end to end on tiny models: template-specific answer tokens, the self-check failure
path, provenance of tokenizer and revision, resume of a complete or mismatched store, lm_head bias.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr
import zarr

from extract.cli import main as extract_main
from layercal import format as fmt
from layercal.lens import lens_logits

SUBJECT = "formal_logic"


def args(model: Path | str, out: Path, data_dir: Path, *extra: str) -> list[str]:
    return [
        "--model",
        str(model),
        "--dataset",
        "mmlu",
        "--subjects",
        SUBJECT,
        "--limit",
        "16",
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


def snapshot(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def lens_matches_model(out: Path) -> None:
    """The numpy lens on the stored last-layer residual (with any lm_head bias) equals the
    stored model logits."""
    g = zarr.open_group(str(out), mode="r")
    ids = np.asarray(g["answer_token_ids"][...])
    bias = np.asarray(g["lm_head_bias"][...])[ids] if "lm_head_bias" in g else None
    z = lens_logits(
        np.asarray(g["resid"][:, -1]), np.asarray(g["W_U"][...])[ids], fmt.norm_spec(g), bias
    )
    np.testing.assert_allclose(z, np.asarray(g["model_logits"][...]), atol=1e-3)


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_llama_dir, data_dir) -> Path:
    """A complete 16-example store of the tiny Llama with the default template."""
    out = tmp_path_factory.mktemp("gaps") / "store.zarr"
    assert extract_main(args(tiny_llama_dir, out, data_dir)) == 0
    return out


def test_template_target_delimiter_decides_answer_tokens(
    tmp_path, tiny_llama_dir, data_dir, store, capsys
):
    """A template whose target_delimiter is "" reads "A".."D" after "Answer:", not " A".."D"."""
    from transformers import AutoTokenizer

    tpl = tmp_path / "nodelim.json"
    tpl.write_text(json.dumps({"name": "no-delimiter", "target_delimiter": ""}))
    out = tmp_path / "nodelim.zarr"
    assert extract_main(args(tiny_llama_dir, out, data_dir, "--template", str(tpl))) == 0
    assert "passed" in capsys.readouterr().out
    ds = xr.open_zarr(out)
    prompt = ds.attrs["layercal"]["provenance"]["template"]["first_prompt"]
    tok = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    base = tok(prompt)["input_ids"]
    expected = []
    for letter in "ABCD":
        full = tok(prompt + letter)["input_ids"]
        assert full[: len(base)] == base and len(full) == len(base) + 1
        expected.append(full[-1])
    stored = ds["answer_token_ids"].values.tolist()
    assert stored == expected
    assert stored != xr.open_zarr(store)["answer_token_ids"].values.tolist()  # " A" differs
    info = ds.attrs["layercal"]
    assert info["provenance"]["answer_tokens"] == ["A", "B", "C", "D"]
    assert info["identity"]["answer_token_ids"] == expected
    lens_matches_model(out)


def test_self_check_failure_stops_and_writes_no_block(
    tmp_path, tiny_llama_dir, data_dir, monkeypatch, capsys
):
    """A wrong architecture entry (Gemma's 1 + weight on a Llama) fails the self-check: exit 1,
    a message naming the block, and no block marked written."""
    from extract.model import arch

    wrong = arch.ArchEntry("model.layers", "model.norm", "lm_head", "rmsnorm", norm_offset=1.0)
    monkeypatch.setitem(arch.ARCHS, "llama", wrong)
    out = tmp_path / "bad.zarr"
    assert extract_main(args(tiny_llama_dir, out, data_dir)) == 1
    err = capsys.readouterr().err
    assert "self-check failed for block 0 (examples 0-15)" in err and "'llama'" in err
    g = zarr.open_group(str(out), mode="r")
    assert not np.asarray(g["written"][...]).any()
    assert not g.attrs["layercal"]["status"]["complete"]


def test_provenance_names_tokenizer_and_revision(store, tiny_llama_dir):
    from transformers import AutoTokenizer

    info = zarr.open_group(str(store), mode="r").attrs["layercal"]
    model = info["provenance"]["model"]
    tok = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    assert model["tokenizer"] == str(Path(tiny_llama_dir).resolve())
    assert model["tokenizer_class"] == type(tok).__name__
    assert model["tokenizer_vocab_size"] == len(tok) == 49152
    # a local folder: nothing requested, no hub commit; identity keeps its keys unchanged
    assert model["revision_requested"] is None and model["commit"] is None
    assert model["revision"] is None and info["identity"]["revision"] is None
    assert not {"tokenizer", "tokenizer_class", "commit"} & set(info["identity"])


def test_revision_record_keeps_request_and_commit_apart():
    from extract.model.load import revision_record

    sha = "0123456789abcdef0123456789abcdef01234567"
    rec = revision_record("main", SimpleNamespace(_commit_hash=sha))
    assert rec == {"revision": "main", "revision_requested": "main", "commit": sha}
    rec = revision_record(None, SimpleNamespace(_commit_hash=sha))
    assert rec == {"revision": sha, "revision_requested": None, "commit": sha}
    assert revision_record(None, SimpleNamespace())["commit"] is None


def test_resume_of_a_complete_store_changes_nothing(store, tiny_llama_dir, data_dir, capsys):
    before = snapshot(store)
    zarr_json = (store / "zarr.json").read_bytes()
    assert extract_main(args(tiny_llama_dir, store, data_dir, "--resume")) == 0
    assert "already complete: nothing to do" in capsys.readouterr().out
    assert (store / "zarr.json").read_bytes() == zarr_json
    assert snapshot(store) == before


@pytest.mark.parametrize("what", ["model", "template"])
def test_resume_with_another_model_or_template_is_refused(
    what, tmp_path, store, tiny_llama_dir, data_dir, capsys
):
    import torch

    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    before = snapshot(copy)
    model, extra = tiny_llama_dir, ["--resume"]
    if what == "model":  # same architecture and tokenizer, other weights, other folder
        model = tmp_path / "other-llama"
        shutil.copytree(tiny_llama_dir, model)
        from transformers import AutoModelForCausalLM

        lm = AutoModelForCausalLM.from_pretrained(str(model))
        with torch.no_grad():
            lm.model.norm.weight.mul_(2.0)
            lm.model.embed_tokens.weight.mul_(0.5)
        lm.save_pretrained(str(model))
        names = ["model: store has", "w_u_sha256"]
    else:
        tpl = tmp_path / "other.json"
        tpl.write_text(json.dumps({"header": "Questions about {subject}.\n\n"}))
        extra += ["--template", str(tpl)]
        names = ["template_sha256"]
    assert extract_main(args(model, copy, data_dir, *extra)) == 1
    err = capsys.readouterr().err
    assert "refusing to resume" in err
    for name in names:
        assert name in err, (name, err)
    assert snapshot(copy) == before


def test_lm_head_bias_is_stored_and_self_check_passes(tmp_path, smollm2_dir, data_dir):
    """Phi's lm_head has a bias: it is stored as lm_head_bias and the lens uses it."""
    import torch
    import transformers as tf

    from tests.extract.tiny_models import save_tiny

    torch.manual_seed(0)
    cfg = tf.PhiConfig(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    lm = tf.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():
        lm.lm_head.bias.normal_(0.0, 1.0)
    folder = save_tiny(lm, tmp_path / "tiny-phi", smollm2_dir)
    out = tmp_path / "phi.zarr"
    assert extract_main(args(folder, out, data_dir)) == 0
    g = zarr.open_group(str(out), mode="r")
    assert g.attrs["layercal"]["has_lm_head_bias"] is True
    np.testing.assert_array_equal(
        np.asarray(g["lm_head_bias"][...]), lm.lm_head.bias.detach().numpy()
    )
    lens_matches_model(out)
    ids = np.asarray(g["answer_token_ids"][...])
    z_nobias = lens_logits(
        np.asarray(g["resid"][:, -1]), np.asarray(g["W_U"][...])[ids], fmt.norm_spec(g)
    )
    assert np.abs(z_nobias - np.asarray(g["model_logits"][...])).max() > 0.1  # the bias matters


def test_resume_must_repeat_the_capture(tmp_path, store, tiny_llama_dir, data_dir, capsys):
    """A store started without --capture is not resumed with it, nor the other way round, and
    the message says which to pass; nothing is written."""
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    before = snapshot(copy)
    assert (
        extract_main(args(tiny_llama_dir, copy, data_dir, "--resume", "--capture", "mlp_last")) == 1
    )
    err = capsys.readouterr().err
    assert "refusing to resume" in err and "capture: store has None" in err
    assert "started without --capture: drop it" in err
    assert snapshot(copy) == before
    cap = tmp_path / "cap.zarr"
    assert extract_main(args(tiny_llama_dir, cap, data_dir, "--capture", "mlp_last")) == 0
    g = zarr.open_group(str(cap), mode="r")
    assert fmt.captures(g) == ("mlp_last",) and g["mlp_last"].shape == (16, 256)
    before = snapshot(cap)
    assert extract_main(args(tiny_llama_dir, cap, data_dir, "--resume")) == 1
    assert "started with --capture mlp_last: pass it again" in capsys.readouterr().err
    assert snapshot(cap) == before
    assert (
        extract_main(args(tiny_llama_dir, cap, data_dir, "--resume", "--capture", "mlp_last")) == 0
    )
    assert "already complete" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        extract_main(args(tiny_llama_dir, tmp_path / "x.zarr", data_dir, "--capture", "mlp_first"))
    assert "unknown capture mlp_first; available: mlp_last" in capsys.readouterr().err
