"""Readers never write into a store, never execute anything from it, and refuse other versions.

- ``layercal analyze``, ``summary``, ``store info`` and ``store verify`` leave every file and
  folder of a store (and its parent) unchanged: content and modification time.
- An array whose codec would unpickle its chunks is refused before any chunk is decoded, even
  where such a codec is installed (a plugin), by every reader; stray ``.pkl`` files are never
  loaded; no layercal code can unpickle (checked on the source).
- A store of an older ``format_version`` is refused, naming the version, by ``analyze``,
  ``store verify``, ``store info`` and ``extract --resume``.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
import zarr.registry
from zarr.abc.codec import ArrayBytesCodec

from analyze.lens.store import open_store
from layercal import format as fmt
from layercal.cli import main as layercal
from layercal.store import merge, store_info, verify_store

from .helpers import REPO, command, snapshot

PICKLE_CODEC = "numcodecs.pickle"


def _copy(reference: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy.zarr"
    shutil.copytree(reference, out)
    return out


def _set_writable(root: Path, writable: bool) -> None:
    for p in [root, *root.rglob("*")]:
        p.chmod((0o755 if p.is_dir() else 0o644) if writable else (0o555 if p.is_dir() else 0o444))


def test_analysis_never_writes_into_the_store(reference, tmp_path, capsys):
    store = _copy(reference, tmp_path)
    _set_writable(store, False)  # a write would fail too (except as root, where the hashes tell)
    before, parent = snapshot(store), sorted(p.name for p in tmp_path.iterdir())
    report = tmp_path / "report"
    args = ["--n-boot", "20", "--vocab-examples", "8"]
    assert layercal(["analyze", str(store), "--out", str(report), *args]) == 0
    assert layercal(["summary", str(store)]) == 0
    assert layercal(["store", "info", str(store)]) == 0
    assert layercal(["store", "verify", str(store), "--sample", "16"]) == 0
    ds = open_store(store)
    assert np.isfinite(ds["resid"].isel(layer=-1).mean().values)
    capsys.readouterr()
    after = snapshot(store)
    _set_writable(store, True)
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*parent, "report"])


class _Payload:
    """Unpickling this creates ``marker``: a stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


class PickleCodec(ArrayBytesCodec):
    """What an installed plugin registering a pickle codec would do: decode = pickle.loads."""

    is_fixed_size = False

    @classmethod
    def from_dict(cls, data):
        return cls()

    def to_dict(self):
        return {"name": PICKLE_CODEC}

    async def _decode_single(self, chunk_bytes, chunk_spec):
        value = pickle.loads(chunk_bytes.to_bytes())  # the danger this test guards against
        arr = np.asarray(value, dtype=chunk_spec.dtype.to_native_dtype())
        return chunk_spec.prototype.nd_buffer.from_numpy_array(arr.reshape(chunk_spec.shape))

    async def _encode_single(self, chunk_array, chunk_spec):
        raise NotImplementedError

    def compute_encoded_size(self, input_byte_length, chunk_spec):
        raise NotImplementedError


@pytest.fixture()
def pickle_plugin():
    zarr.registry.register_codec(PICKLE_CODEC, PickleCodec)
    yield
    vars(zarr.registry)["__codec_registries"].pop(PICKLE_CODEC, None)


def _plant(store: Path, name: str, marker: Path) -> None:
    """Make array ``name`` (new or existing) pickle-coded, with a payload as its chunk, in its
    own zarr.json and in the consolidated copy."""
    meta_path = store / name / "zarr.json"
    src = meta_path if meta_path.exists() else store / "label" / "zarr.json"
    meta = json.loads(src.read_text())
    meta["codecs"] = [{"name": PICKLE_CODEC}]
    meta["chunk_grid"]["configuration"]["chunk_shape"] = meta["shape"]
    shutil.rmtree(store / name, ignore_errors=True)
    (store / name / "c").mkdir(parents=True)
    (store / name / "zarr.json").write_text(json.dumps(meta))
    (store / name / "c" / "0").write_bytes(pickle.dumps(_Payload(marker)))
    root = json.loads((store / "zarr.json").read_text())
    root["consolidated_metadata"]["metadata"][name] = meta
    (store / "zarr.json").write_text(json.dumps(root))


@pytest.mark.parametrize("name", ["evil", "layer"])  # an extra array; an index read at open
def test_pickle_codec_is_refused_before_decoding(name, reference, tmp_path, pickle_plugin, capsys):
    store = _copy(reference, tmp_path)
    marker = tmp_path / "payload-ran"
    _plant(store, name, marker)
    # control: with the plugin, plain zarr would run the payload
    with pytest.raises(Exception):  # noqa: B017 - whatever the payload's result makes zarr do
        zarr.open_group(str(store), mode="r")[name][...]
    assert marker.exists()
    marker.unlink()
    for read in (
        lambda: open_store(store),
        lambda: open_store(store, allow_partial=True),
        lambda: store_info(str(store)),
        lambda: merge(tmp_path / "merged.zarr", [str(store)]),
        lambda: fmt.open_for_write(store),
    ):
        with pytest.raises(fmt.StoreError, match=f"array '{name}' uses codec {PICKLE_CODEC}"):
            read()
    rep = verify_store(str(store))
    assert not rep.ok and any(PICKLE_CODEC in p.what for p in rep.problems), rep.lines()
    assert layercal(["analyze", str(store), "--out", str(tmp_path / "r")]) == 1
    assert PICKLE_CODEC in capsys.readouterr().err
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Object at evil.pkl is not recognized")
def test_unknown_codec_and_stray_pickles_are_never_loaded(reference, tmp_path, capsys):
    store = _copy(reference, tmp_path)
    marker = tmp_path / "payload-ran"
    for where in (store / "evil.pkl", store / "resid" / "evil.pkl"):
        where.write_bytes(pickle.dumps(_Payload(marker)))
    assert layercal(["summary", str(store)]) == 0
    assert layercal(["store", "verify", str(store), "--sample", "8"]) == 0
    assert layercal(["store", "info", str(store)]) == 0
    _plant(store, "evil", marker)  # no plugin: zarr itself does not know the codec
    assert layercal(["store", "verify", str(store)]) == 1
    assert layercal(["analyze", str(store), "--out", str(tmp_path / "r")]) == 1
    assert "Traceback" not in capsys.readouterr().err
    assert not marker.exists()


def test_no_code_path_can_unpickle():
    """No layercal module imports a pickle library or calls pandas' read_pickle; np.load
    refuses pickles explicitly; torch.load (if ever used) is weights-only."""
    scanner = Path(__file__).with_name("scan_unpickle.py")
    p = subprocess.run(
        [sys.executable, str(scanner), str(REPO)], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == []
    # the scanner does see what it looks for
    bad = "import pickle\nimport numpy as np\nnp.load(f)\nnp.load(f, allow_pickle=True)\n"
    assert len(_scan_text(scanner, bad)) == 3


def _scan_text(scanner: Path, text: str) -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "analyze").mkdir()
        (Path(tmp) / "analyze" / "bad.py").write_text(text)
        p = subprocess.run(
            [sys.executable, str(scanner), tmp], capture_output=True, text=True, timeout=120
        )
    return json.loads(p.stdout)


def _set_version(store: Path, version: int) -> None:
    root = json.loads((store / "zarr.json").read_text())
    root["attributes"]["layercal"]["format_version"] = version
    (store / "zarr.json").write_text(json.dumps(root))


def test_older_format_version_is_refused_naming_it(
    reference, tmp_path, tiny_llama_dir, data_dir, capsys
):
    store = _copy(reference, tmp_path)
    _set_version(store, 0)
    before = snapshot(store)
    want = f"format version 0; this layercal reads version {fmt.FORMAT_VERSION}"
    assert layercal(["analyze", str(store), "--out", str(tmp_path / "r")]) == 1
    assert want in capsys.readouterr().err
    assert layercal(["store", "info", str(store)]) == 1
    assert want in capsys.readouterr().err
    assert layercal(["store", "verify", str(store)]) == 1
    assert want in capsys.readouterr().out
    cmd = command(tiny_llama_dir, store, data_dir, "--resume")[3:]
    assert layercal(["extract", *cmd]) == 1
    err = capsys.readouterr().err
    assert want in err and "Traceback" not in err
    assert snapshot(store) == before
