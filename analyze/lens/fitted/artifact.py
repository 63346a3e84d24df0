"""The lens artifact: ``DIR/lens.json`` beside its arrays, and loading it for a store.

A folder written by ``layercal lens fit``:

- ``lens.json``: format and version, ``kind``, the store it was fitted on (``store``,
  ``store_hash`` — the provenance hash every analysis table carries —, ``w_u_sha256``, model,
  dataset, sizes), ``folds`` (k, seed, rule, sizes), ``token_set`` (rule, top_k, size),
  ``penalties`` (how each translator was regularised, per fold and depth), ``diagnostics`` (per
  depth: KL to final and top-1 agreement with final on held-out examples, beside the logit
  lens's), ``arrays`` (shape, dtype, sha256 of each file), ``labels_used: false``, timing.
- ``example_id.npy`` (n,), ``fold.npy`` (n,): the fold of every example of that store.
- ``tokens.npy`` (F, S): each fold's token set.
- ``weight.npy`` (F, L, d, d) and ``bias.npy`` (F, L, d) float32 (``shortcut``, ``tuned``:
  h -> h + h B + b), or ``temperature.npy`` (F, L) (``temperature``: logits / T). The last depth
  is the identity in every fold.

:func:`~.apply.load_lens` reads the JSON and checks the files; :meth:`~.apply.FittedLens.bind`
ties the lens to an opened store, refusing a store it was not fitted on unless ``transfer``.
This module holds the format: its constants, the errors, block-wise array files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from layercal import format as fmt

LENS_FORMAT = "layercal-lens"
LENS_VERSION = 1
KINDS = ("temperature", "shortcut", "tuned")
AFFINE_KINDS = ("shortcut", "tuned")
TRANSFER_RULE = (
    "on a store the lens was not fitted on (--transfer: another dataset of the same model), "
    "every example is read through the mean of the k fold translators (temperature: the mean "
    "of the k inverse temperatures)"
)


class LensError(ValueError):
    """A lens cannot be fitted, loaded or applied as asked; the message says what to do."""


def w_u_fingerprint(ds: xr.Dataset) -> str:
    """The store's ``identity.w_u_sha256`` (the sha256 of its W_U when not recorded)."""
    ident = ds.attrs.get("layercal", {}).get("identity", {})
    if ident.get("w_u_sha256"):
        return str(ident["w_u_sha256"])
    return fmt.sha256_bytes(np.asarray(ds["W_U"].values, np.float32))


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in blocks of 16 MiB."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(16 << 20):
            h.update(block)
    return h.hexdigest()


def npy_offset(path: Path) -> tuple[int, tuple[int, ...], np.dtype[Any]]:
    """(byte offset of the data, shape, dtype) of a C-order ``.npy`` file."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        if fortran:
            raise LensError(f"{path} is stored in Fortran order; refit the lens")
        return f.tell(), tuple(shape), dtype


class BlockWriter:
    """A ``.npy`` file of ``shape`` written one leading-index block at a time by seeking (never
    mapped, so writing a large translator array costs no memory)."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: Any = np.float32) -> None:
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)
        np.lib.format.open_memmap(path, mode="w+", dtype=self.dtype, shape=shape).flush()
        self.offset = npy_offset(path)[0]

    def write(self, index: tuple[int, ...], block: NDArray[Any]) -> None:
        """Write ``block`` at ``self[index]`` (a C-contiguous sub-array of the last axes)."""
        inner = int(np.prod(self.shape[len(index) :], dtype=np.int64))
        flat = int(np.ravel_multi_index(index, self.shape[: len(index)])) if index else 0
        data = np.ascontiguousarray(block, self.dtype)
        if data.size != inner:
            raise ValueError(f"block of {data.size} values for {inner} at {index}")
        with open(self.path, "r+b") as f:
            f.seek(self.offset + flat * inner * self.dtype.itemsize)
            f.write(data.tobytes())


def read_block(path: Path, index: tuple[int, ...]) -> NDArray[Any]:
    """``np.load(path)[index]`` for leading indices, read by seeking (no mapping, no copy of the
    rest of the file)."""
    offset, shape, dtype = npy_offset(path)
    inner_shape = shape[len(index) :]
    inner = int(np.prod(inner_shape, dtype=np.int64))
    flat = int(np.ravel_multi_index(index, shape[: len(index)])) if index else 0
    out = np.fromfile(path, dtype=dtype, count=inner, offset=offset + flat * inner * dtype.itemsize)
    return out.reshape(inner_shape)


def save_folder(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move the finished folder ``tmp`` to ``out``; an existing lens there is replaced only
    with ``overwrite`` (and only once the new one is complete)."""
    if out.exists():
        if not overwrite:
            shutil.rmtree(tmp, ignore_errors=True)
            raise LensError(f"{out} already exists; pass --overwrite to replace it")
        old = out.with_name(f".old-{out.name}-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
