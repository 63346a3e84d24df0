"""Bad inputs give a clear error, exit 1, and leave existing stores byte-for-byte unchanged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from extract.cli import main as extract_main

SUBJECT = "formal_logic"


def snapshot(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def existing_store(tmp_path_factory, tiny_llama_dir, data_dir) -> Path:
    out = tmp_path_factory.mktemp("existing") / "store.zarr"
    rc = extract_main(base_args(tiny_llama_dir, out, data_dir))
    assert rc == 0
    return out


def base_args(model, out, data_dir, dataset="mmlu"):
    args = [
        "--model",
        str(model),
        "--dataset",
        str(dataset),
        "--limit",
        "16",
        "--out",
        str(out),
        "--block-size",
        "128",
        "--no-progress",
        "--device",
        "cpu",
        "--dtype",
        "float32",
    ]
    if dataset == "mmlu":
        args += ["--subjects", SUBJECT, "--data-dir", str(data_dir)]
    return args


def broken_mmlu(tmp_path: Path, data_dir: Path, row: str) -> Path:
    root = tmp_path / "data"
    for split in ("test", "dev"):
        (root / "mmlu" / split).mkdir(parents=True)
        shutil.copy(data_dir / "mmlu" / split / f"{SUBJECT}_{split}.csv", root / "mmlu" / split)
    with open(root / "mmlu" / "test" / f"{SUBJECT}_test.csv", "a", encoding="utf-8") as f:
        f.write(row)
    return root


def char_tokenizer_model(folder: Path) -> Path:
    """A tiny Llama whose tokenizer splits every character: ' A' is two tokens."""
    import string

    import torch
    import transformers as tf
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    vocab = {c: i for i, c in enumerate(["[UNK]", "[PAD]", *string.printable])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    fast = tf.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        pad_token_id=1,
    )
    tf.AutoModelForCausalLM.from_config(cfg).save_pretrained(str(folder))
    fast.save_pretrained(str(folder))
    return folder


def opt_model(folder: Path, tokenizer_dir: str) -> Path:
    import transformers as tf

    cfg = tf.OPTConfig(
        vocab_size=49152,
        hidden_size=32,
        num_hidden_layers=1,
        ffn_dim=64,
        num_attention_heads=2,
        word_embed_proj_dim=32,
    )
    tf.AutoModelForCausalLM.from_config(cfg).save_pretrained(str(folder))
    tf.AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(str(folder))
    return folder


CASES = [
    "missing_data_dir",
    "malformed_row",
    "answer_outside_choices",
    "unknown_model",
    "unknown_architecture",
    "multi_token_letter",
    "file_answer_outside",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case, tmp_path, tiny_llama_dir, smollm2_dir, data_dir, existing_store, capsys):
    model, dataset, ddir = tiny_llama_dir, "mmlu", data_dir
    if case == "missing_data_dir":
        ddir, expect = tmp_path / "nowhere", ["nowhere", "mmlu"]
    elif case == "malformed_row":
        ddir = broken_mmlu(tmp_path, data_dir, '"q","a","b","c"\n')
        expect = [f"{SUBJECT}_test.csv", "row"]
    elif case == "answer_outside_choices":
        ddir = broken_mmlu(tmp_path, data_dir, '"q","a","b","c","d","E"\n')
        expect = [f"{SUBJECT}_test.csv", "E"]
    elif case == "unknown_model":
        model, expect = "no-such-model", ["unknown model", "no-such-model"]
    elif case == "unknown_architecture":
        model, expect = opt_model(tmp_path / "opt", smollm2_dir), ["'opt'", "not covered"]
    elif case == "multi_token_letter":
        model, expect = char_tokenizer_model(tmp_path / "chars"), ["not a single token"]
    else:  # a generic file whose answer is not among its choices
        f = tmp_path / "mc.jsonl"
        f.write_text('{"question": "2+2?", "choices": ["3", "4"], "answer": 2}\n')
        dataset, expect = str(f), ["row", "answer"]
    for out, resume in ((tmp_path / "new.zarr", False), (existing_store, True)):
        before = snapshot(existing_store)
        args = base_args(model, out, ddir, dataset) + (["--resume"] if resume else [])
        rc = extract_main(args)
        err = capsys.readouterr().err
        assert rc == 1, err
        assert "error: " in err
        for word in expect:
            assert word.lower() in err.lower(), (word, err)
        assert not (tmp_path / "new.zarr").exists()
        assert snapshot(existing_store) == before


def test_bad_arguments_exit_2(capsys, tmp_path):
    assert (
        extract_main(
            ["--model", "m", "--dataset", "mmlu", "--out", str(tmp_path / "o"), "--shard", "3/2"]
        )
        == 2
    )
    assert "0 <= i < n" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        extract_main(
            [
                "--model",
                "m",
                "--dataset",
                "mmlu",
                "--out",
                "o",
                "--subjects",
                "a",
                "--category",
                "stem",
            ]
        )
