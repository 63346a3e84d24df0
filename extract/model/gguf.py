"""GGUF -> a cached fp32 safetensors model folder, one tensor at a time.

transformers can load a GGUF (``from_pretrained(..., gguf_file=)``), but only as a whole: its
de-quantised state dict, the model it is copied into and the saved copy were all in memory at
once (14 GB peak for a 1.5B model). Here the tensors are de-quantised one by one with
transformers' own name mapping and tensor processors (so the weights are the same as its loader
gives: tests/test_builtins.py checks it) and written to safetensors shards as they come, so the
peak stays near one shard plus the largest tensor, whatever the model's size.

The folder, ``<cache>/models/<gguf stem>-<sha256[:16]>/``, holds config, tokenizer, shards, an
index and ``layercal.json`` (the GGUF's name and sha256, copied into each store's provenance). It
is written under a ``.partial`` name and renamed when complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

SHARD_BYTES = 512 * 2**20  # fp32 bytes per safetensors shard


class ConversionError(ValueError):
    """The GGUF could not be converted; the message says what is wrong."""


def converted_folder(cache: Path, gguf_name: str, sha256: str) -> Path:
    return cache / "models" / f"{Path(gguf_name).stem}-{sha256[:16]}"


def _write_shards(gguf: Path, model_type_config: Any, folder: Path) -> list[str]:
    """De-quantise every tensor of ``gguf`` into fp32 safetensors shards in ``folder``; returns
    the parameter names written."""
    from gguf import GGUFReader, dequantize
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
        load_gguf_checkpoint,
        read_field,
    )

    parsed = load_gguf_checkpoint(str(gguf), return_tensors=False)
    reader = GGUFReader(str(gguf))
    arch = read_field(reader, "general.architecture")[0]
    processor = TENSOR_PROCESSORS.get(arch, TensorProcessor)(config=parsed.get("config", {}))
    with torch.device("meta"):  # names only: no memory for the weights
        skeleton = AutoModelForCausalLM.from_config(model_type_config)
    mapping = get_gguf_hf_weights_map(skeleton, processor)
    model_type_config.architectures = [type(skeleton).__name__]
    expected = set(skeleton.state_dict())
    if getattr(model_type_config, "tie_word_embeddings", False):
        expected -= {k for k in expected if k.startswith("lm_head.")}
    del skeleton

    names: list[str] = []
    shard: dict[str, torch.Tensor] = {}
    weight_map: dict[str, str] = {}
    sizes = 0

    def flush() -> None:
        nonlocal shard, sizes
        if shard:
            fname = f"shard-{len(set(weight_map.values())) + 1:05d}.safetensors"
            save_file(shard, str(folder / fname), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, fname))
            shard, sizes = {}, 0

    for tensor in reader.tensors:
        weights = dequantize(tensor.data, tensor.tensor_type)
        result = processor.process(
            weights=weights, name=tensor.name, tensor_key_mapping=mapping, parsed_parameters=parsed
        )
        if result.name not in mapping:
            continue
        name = mapping[result.name]
        # a copy only where the array is a read-only view of the file (f32 tensors)
        array = np.require(result.weights, np.float32, ["C", "W", "O"])
        shard[name] = torch.from_numpy(array)
        names.append(name)
        sizes += array.nbytes
        if sizes >= SHARD_BYTES:
            flush()
    flush()
    lost = sorted(expected - set(names))
    if lost:
        raise ConversionError(
            f"GGUF conversion of {gguf} lost weights: {lost[:8]}{'...' if len(lost) > 8 else ''}"
        )
    n = len(set(weight_map.values()))
    renamed = {}
    for i in range(1, n + 1):  # the usual names, now that the count is known
        new = f"model-{i:05d}-of-{n:05d}.safetensors"
        os.replace(folder / f"shard-{i:05d}.safetensors", folder / new)
        renamed[f"shard-{i:05d}.safetensors"] = new
    index = {
        "metadata": {"total_size": sum((folder / f).stat().st_size for f in renamed.values())},
        "weight_map": {k: renamed[v] for k, v in sorted(weight_map.items())},
    }
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return names


def convert_gguf(gguf: Path, digest: str, cache: Path, hub_id: str | None = None) -> Path:
    """De-quantise ``gguf`` (sha256 ``digest``) into a cached fp32 safetensors folder; returns
    the folder (at once when it exists)."""
    out = converted_folder(cache, gguf.name, digest)
    if (out / "layercal.json").exists():
        return out
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    kw = {"gguf_file": gguf.name}
    config = AutoConfig.from_pretrained(str(gguf.parent), **kw)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.float32
    tmp = out.with_name(f"{out.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _write_shards(gguf, config, tmp)
        config.save_pretrained(str(tmp))
        GenerationConfig.from_model_config(config).save_pretrained(str(tmp))
        AutoTokenizer.from_pretrained(str(gguf.parent), **kw).save_pretrained(str(tmp))
        record = {"gguf_file": gguf.name, "gguf_sha256": digest, "hub_id": hub_id}
        (tmp / "layercal.json").write_text(json.dumps(record, indent=2))
        if not (out / "layercal.json").exists():  # else a concurrent conversion finished first
            shutil.rmtree(out, ignore_errors=True)
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
