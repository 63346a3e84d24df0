"""The activation store: one Zarr v3 group per (model, dataset, template).

This module is the contract between the two stages (documented in docs/store-format.md): the
extraction stage creates stores and writes blocks through it, the analysis stage reads the names
and layout defined here. It imports numpy and zarr only.

Write protocol (resumable, shardable): every array is pre-allocated at creation; per-example
metadata, the unembedding and the final norm are written then. Activations are written one
*block* of ``block`` consecutive examples at a time — each block is exactly one shard of
``resid`` and one chunk of every other per-example array, so a block write replaces whole objects
and never touches another block's bytes — and only then is the block's ``written`` chunk flipped.
A killed writer therefore leaves each block either fully written and marked, or unmarked.

Ownership: a writer claims each block before computing it (``layercal.claims``, re-exported
here), so two processes never fill the same block. Readers refuse stores whose arrays use codecs
outside :data:`SAFE_CODECS` (nothing in a store is ever unpickled or otherwise executed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from layercal.claims import (
    BlockClaim,
    claim_block,
    claimed_message,
    claims_dir,
    clear_dead_claims,
    is_live,
    read_claims,
    release_block,
)
from layercal.errors import BlockClaimedError, StoreError, StoreExistsError
from layercal.lens import NormSpec

__all__ = [  # claims and errors are re-exported: `fmt.claim_block`, `fmt.StoreError`
    "BlockClaim",
    "BlockClaimedError",
    "StoreError",
    "StoreExistsError",
    "claim_block",
    "claims_dir",
    "clear_dead_claims",
    "release_block",
]

FORMAT_NAME = "layercal-activation-store"
FORMAT_VERSION = 1
CHUNK_EXAMPLES = 128  # inner chunk (the read unit): 128 examples x 1 layer x hidden
DEFAULT_BLOCK = 256  # write unit: one shard of resid, one chunk of every per-example array
W_U_CHUNK_ROWS = 4096  # W_U is chunked along vocab only
W_U_SLAB_ROWS = 4 * W_U_CHUNK_ROWS  # rows of W_U converted, hashed and written at a time

# name -> dimension names, in contract order (the order block_sha256 hashes them). Activation
# arrays are written per block; the rest at creation.
ACTIVATION_ARRAYS: dict[str, tuple[str, ...]] = {
    "resid": ("example", "layer", "hidden"),
    "model_logits": ("example", "choice"),
    "lens_logits": ("example", "layer", "choice"),
    "lens_lse": ("example", "layer"),
    "lens_entropy": ("example", "layer"),
}
# Activation arrays added to format version 1 later (additive): every store created now has
# them, stores written by an earlier layercal lack them, so readers check before using one.
OPTIONAL_ACTIVATION_ARRAYS: frozenset[str] = frozenset({"lens_entropy"})
# Activation arrays recorded only when extraction is asked to (``extract --capture NAME``), after
# the others in contract order, and the arrays written at creation with them. A store without a
# capture is exactly a store as written before captures existed.
CAPTURE_ARRAYS: dict[str, tuple[str, ...]] = {"mlp_last": ("example", "neuron")}
CAPTURE_WEIGHTS: dict[str, tuple[str, ...]] = {"w_out_last": ("neuron", "hidden")}
CAPTURE_OF: dict[str, tuple[str, str]] = {"mlp_last": ("mlp_last", "w_out_last")}  # name -> arrays
EXAMPLE_COORDS = ("example_id", "subject", "category")
# The Zarr v3 core codecs: pure byte transforms. Anything else (a plugin codec, a pickle or
# object codec) is refused before any chunk is decoded.
SAFE_CODECS = frozenset(
    {"bytes", "blosc", "zstd", "gzip", "crc32c", "transpose", "sharding_indexed"}
    | {"vlen-utf8", "vlen-bytes"}
)


def activation_arrays(store: zarr.Group | Iterable[str]) -> tuple[str, ...]:
    """The activation arrays of ``store`` (a group, or the names it holds: an xarray Dataset, a
    dict of arrays) in contract order: every required one, the optional ones it has, then the
    captured ones it has. These are the arrays its blocks are written with and its
    ``block_sha256`` covers."""
    maybe = OPTIONAL_ACTIVATION_ARRAYS | set(CAPTURE_ARRAYS)
    if isinstance(store, zarr.Group):  # one metadata read per optional array, no listing
        has = {n for n in maybe if isinstance(store.get(n), zarr.Array)}
    else:
        has = set(store) & maybe
    return tuple(
        name for name in (*ACTIVATION_ARRAYS, *CAPTURE_ARRAYS) if name not in maybe or name in has
    )


def activation_dims(name: str) -> tuple[str, ...]:
    """Dimension names of an activation array, captured ones included."""
    return ACTIVATION_ARRAYS.get(name) or CAPTURE_ARRAYS[name]


def captures(store: zarr.Group | Iterable[str]) -> tuple[str, ...]:
    """The captures (``extract --capture``) a store records, e.g. ``("mlp_last",)``."""
    return tuple(n for n in activation_arrays(store) if n in CAPTURE_ARRAYS)


def compressor() -> BloscCodec:
    """Blosc zstd with byte shuffle set explicitly (unset, Blosc picks bitshuffle)."""
    return BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")


@dataclass(frozen=True)
class Layout:
    n_examples: int
    n_depth: int  # embedding output + one per decoder block
    hidden: int
    vocab: int
    n_choices: int
    block: int = DEFAULT_BLOCK

    def __post_init__(self) -> None:
        if self.block % CHUNK_EXAMPLES:
            raise StoreError(f"block size {self.block} must be a multiple of {CHUNK_EXAMPLES}")
        if min(self.n_examples, self.n_depth, self.hidden, self.vocab, self.n_choices) < 1:
            raise StoreError(f"empty store layout: {self}")

    @property
    def n_blocks(self) -> int:
        return -(-self.n_examples // self.block)

    def block_slice(self, b: int) -> slice:
        return slice(b * self.block, min((b + 1) * self.block, self.n_examples))


@dataclass(frozen=True)
class ExampleMeta:
    """Per-example metadata, known before any forward pass. Arrays of length n_examples."""

    example_id: list[str]
    subject: list[str]
    category: list[str]
    question: list[str]
    choices: list[list[str]]  # ragged; padded with "" up to n_choices in the store
    label: np.ndarray  # (n,) int
    n_tokens: np.ndarray  # (n,) int prompt length in tokens


def _arr(group: zarr.Group, name: str, data: np.ndarray, dims: tuple[str, ...], **kw: Any) -> None:
    chunks = kw.pop("chunks", data.shape)
    codec = kw.pop("compressor", None) or compressor()
    arr = group.create_array(
        name,
        shape=data.shape,
        dtype=data.dtype if data.dtype.kind != "U" else str,
        chunks=chunks,
        dimension_names=dims,
        compressors=codec if data.dtype.kind != "U" else "auto",
        **kw,
    )
    arr[...] = data


def _le_bytes(a: np.ndarray) -> memoryview:
    """The little-endian C-order bytes of ``a``, without a copy where it already is both."""
    c = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False)
    return c.reshape(-1).view(np.uint8).data if c.size else memoryview(b"")


def sha256_bytes(*arrays: np.ndarray) -> str:
    """sha256 over the little-endian C-order bytes of the arrays (a content fingerprint)."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(_le_bytes(a))
    return h.hexdigest()


@dataclass(frozen=True)
class RowSource:
    """A float32 matrix handed over a slab of rows at a time: W_U of a bf16 model is streamed
    into the store and its hash, never held whole as float32 (0.93 GB for a 151,936-token
    vocabulary at hidden 1,536). ``rows(start, stop)``: rows ``start:stop`` as float32."""

    shape: tuple[int, int]
    rows: Callable[[int, int], np.ndarray]

    @classmethod
    def of(cls, a: np.ndarray) -> RowSource:
        """An in-memory matrix as a source (its rows as float32)."""
        return cls((int(a.shape[0]), int(a.shape[1])), lambda i, j: np.asarray(a[i:j], np.float32))

    def slabs(self, step: int = W_U_SLAB_ROWS) -> Iterator[tuple[int, np.ndarray]]:
        """(start, rows start:start+step) in order, the last slab shorter."""
        for i in range(0, self.shape[0], step):
            yield i, self.rows(i, min(i + step, self.shape[0]))


def sha256_rows(src: RowSource, step: int = W_U_SLAB_ROWS) -> str:
    """:func:`sha256_bytes` of the whole float32 matrix, computed ``step`` rows at a time (the
    bytes are hashed in the same order, so the digest is the same: resume finds the identity
    that stores written from a whole copy recorded)."""
    h = hashlib.sha256()
    for _, slab in src.slabs(step):
        h.update(_le_bytes(slab))
    return h.hexdigest()


def create_store(
    path: str | os.PathLike[str],
    layout: Layout,
    meta: ExampleMeta,
    *,
    w_u: np.ndarray | RowSource,
    lm_head_bias: np.ndarray | None,
    norm: NormSpec,
    answer_token_ids: np.ndarray,
    attrs: Mapping[str, Any],
    optional_arrays: Iterable[str] = OPTIONAL_ACTIVATION_ARRAYS,
    mlp_last: MlpLastCapture | None = None,
) -> zarr.Group:
    """Create a new store at ``path`` and write everything known before the forward passes.

    Refuses an existing path. ``attrs`` is recorded under ``attrs["layercal"]`` and must contain
    ``identity`` (what must match on resume) and ``provenance``. The status ``created`` is set
    last, so a store whose creation was interrupted is recognised as such.
    ``optional_arrays``: which of :data:`OPTIONAL_ACTIVATION_ARRAYS` to create (all by default;
    ``()`` gives a store as layercal wrote them before those arrays were added).
    ``mlp_last``: the capture ``mlp_last`` (``extract --capture mlp_last``): the activation array
    ``mlp_last`` is created and ``w_out_last`` written; None (default): neither.
    ``w_u``: the matrix, or a :class:`RowSource` written slab by slab (stored as float32 alike).
    """
    optional = set(optional_arrays)
    unknown = optional - OPTIONAL_ACTIVATION_ARRAYS
    if unknown:
        raise StoreError(f"not optional activation arrays: {sorted(unknown)}")
    path = Path(path)
    if tuple(w_u.shape) != (layout.vocab, layout.hidden):
        raise StoreError(f"W_U has shape {w_u.shape}, expected {(layout.vocab, layout.hidden)}")
    neurons = 0
    if mlp_last is not None:
        w_out = np.asarray(mlp_last.w_out)
        if w_out.ndim != 2 or w_out.shape[1] != layout.hidden or w_out.shape[0] < 1:
            raise StoreError(
                f"w_out_last has shape {w_out.shape}, expected (neurons, {layout.hidden})"
            )
        neurons = int(w_out.shape[0])
        optional.add("mlp_last")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # mkdir is atomic: of several shards starting at once exactly one creates the store,
        # the others get FileExistsError and join it once its status says ``created``.
        path.mkdir()
    except FileExistsError as e:
        raise StoreExistsError(
            f"{path} already exists. Pass --resume to continue filling it, or choose another --out."
        ) from e
    g = zarr.open_group(str(path), mode="w-", zarr_format=3)
    _create_activation_arrays(g, layout, optional, neurons)
    _write_examples(g, layout, meta, answer_token_ids)
    _write_lens(g, layout, w_u, lm_head_bias, norm)
    root = _root_attrs(attrs, layout, norm, lm_head_bias is not None)
    if mlp_last is not None:
        _arr(
            g,
            "w_out_last",
            np.asarray(mlp_last.w_out, dtype=np.float32),
            CAPTURE_WEIGHTS["w_out_last"],
            chunks=(min(neurons, W_U_CHUNK_ROWS), layout.hidden),
        )
        sha = sha256_bytes(np.asarray(mlp_last.w_out, dtype=np.float32))
        root["capture"] = {"mlp_last": {**mlp_last.info, "neurons": neurons, "w_out_sha256": sha}}
    g.attrs["layercal"] = jsonable(root)
    return g


@dataclass(frozen=True)
class MlpLastCapture:
    """What the capture ``mlp_last`` writes at creation (docs/store-format.md).

    ``w_out``: (neuron, hidden), row i = what neuron i of the last block's MLP adds to the
    residual stream per unit of its activation (the down projection's weight, transposed).
    ``info``: recorded as ``attrs["capture"]["mlp_last"]`` (where the activation was read: the
    block, the modules, the activation function), with ``neurons`` and ``w_out_sha256`` (of
    ``w_out`` as float32) added."""

    w_out: np.ndarray
    info: Mapping[str, Any]


def _create_activation_arrays(
    g: zarr.Group, layout: Layout, optional: set[str], neurons: int = 0
) -> None:
    """The activation arrays (NaN until written), ``written`` and ``block_sha256``."""
    n, L, d, blk = layout.n_examples, layout.n_depth, layout.hidden, layout.block
    coords: dict[str, Any] = {"coordinates": " ".join(EXAMPLE_COORDS)}
    nan = np.float32(np.nan)
    g.create_array(
        "resid",
        shape=(n, L, d),
        dtype="float32",
        chunks=(CHUNK_EXAMPLES, 1, d),
        shards=(blk, L, d),
        compressors=compressor(),
        dimension_names=ACTIVATION_ARRAYS["resid"],
        fill_value=nan,
        attributes=coords,
    )
    sizes = {"example": n, "layer": L, "choice": layout.n_choices, "neuron": neurons}
    for name in activation_arrays(optional)[1:]:  # resid (sharded) is created above
        shape = tuple(sizes[dim] for dim in activation_dims(name))
        g.create_array(
            name,
            shape=shape,
            dtype="float32",
            chunks=(blk, *shape[1:]),
            compressors=compressor(),
            dimension_names=activation_dims(name),
            fill_value=nan,
            attributes=coords,
        )
    g.create_array("written", shape=(n,), dtype="bool", chunks=(blk,), dimension_names=("example",))
    g.create_array(
        "block_sha256",
        shape=(layout.n_blocks,),
        dtype=str,
        chunks=(1,),
        dimension_names=("block",),
    )


def _write_examples(
    g: zarr.Group, layout: Layout, meta: ExampleMeta, answer_token_ids: np.ndarray
) -> None:
    """The coordinates and the per-example metadata."""
    n, L, K = layout.n_examples, layout.n_depth, layout.n_choices
    coords: dict[str, Any] = {"coordinates": " ".join(EXAMPLE_COORDS)}
    _arr(g, "example", np.arange(n, dtype=np.int64), ("example",))
    _arr(g, "layer", np.arange(L, dtype=np.int64), ("layer",))
    _arr(g, "choice", np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:K])), ("choice",))
    for name in EXAMPLE_COORDS + ("question",):
        _arr(g, name, np.array(getattr(meta, name), dtype=str), ("example",))
    padded = np.array([list(c) + [""] * (K - len(c)) for c in meta.choices], dtype=str)
    _arr(g, "choice_text", padded, ("example", "choice"))
    mask = np.array([[k < len(c) for k in range(K)] for c in meta.choices], dtype=bool)
    _arr(g, "choice_mask", mask, ("example", "choice"), attributes=coords)
    _arr(g, "label", np.asarray(meta.label, dtype=np.int16), ("example",), attributes=coords)
    _arr(g, "n_tokens", np.asarray(meta.n_tokens, dtype=np.int32), ("example",))
    _arr(g, "answer_token_ids", np.asarray(answer_token_ids, dtype=np.int64), ("choice",))


def _write_lens(
    g: zarr.Group,
    layout: Layout,
    w_u: np.ndarray | RowSource,
    lm_head_bias: np.ndarray | None,
    norm: NormSpec,
) -> None:
    """The lens as data: W_U, the lm_head bias, the final norm's weight and bias."""
    # trained weights hardly compress (SmolLM2: 72 MB at zstd level 3, 75 MB at level 1), and
    # level 1 is ~4x faster: W_U is written before the first forward pass, on the critical path
    w_u_codec = BloscCodec(cname="zstd", clevel=1, shuffle="shuffle")
    src = w_u if isinstance(w_u, RowSource) else RowSource.of(w_u)
    arr = g.create_array(
        "W_U",
        shape=src.shape,
        dtype="float32",
        chunks=(W_U_CHUNK_ROWS, layout.hidden),
        dimension_names=("vocab", "hidden"),
        compressors=w_u_codec,
    )
    for start, slab in src.slabs():  # whole chunks per slab: no chunk is written twice
        arr[start : start + slab.shape[0]] = slab
    if lm_head_bias is not None:
        _arr(g, "lm_head_bias", np.asarray(lm_head_bias, dtype=np.float32), ("vocab",))
    _arr(g, "final_norm_weight", np.asarray(norm.weight, dtype=np.float32), ("hidden",))
    if norm.bias is not None:
        _arr(g, "final_norm_bias", np.asarray(norm.bias, dtype=np.float32), ("hidden",))


def _root_attrs(
    attrs: Mapping[str, Any], layout: Layout, norm: NormSpec, has_bias: bool
) -> dict[str, Any]:
    """``attrs["layercal"]`` of a new store: the caller's identity and provenance, the format,
    the layout, the final norm, and the status ``created``."""
    info = dict(attrs)
    info.update(
        format=FORMAT_NAME,
        format_version=FORMAT_VERSION,
        layout={
            "n_examples": layout.n_examples,
            "n_depth": layout.n_depth,
            "hidden": layout.hidden,
            "vocab": layout.vocab,
            "n_choices": layout.n_choices,
            "block": layout.block,
            "chunk_examples": CHUNK_EXAMPLES,
        },
        final_norm={
            "kind": norm.kind,
            "eps": norm.eps,
            "offset": norm.offset,
            "softcap": norm.softcap,
            "has_bias": norm.bias is not None,
        },
        has_lm_head_bias=has_bias,
        status={"created": True, "complete": False},
    )
    return info


def array(g: zarr.Group, name: str) -> zarr.Array:
    """The array ``name`` of a store group (typed accessor)."""
    a = g[name]
    if not isinstance(a, zarr.Array):
        raise StoreError(f"'{name}' in the store is not an array")
    return a


def attrs(g: zarr.Group) -> dict[str, Any]:
    """The layercal attributes of a store group (empty dict when absent)."""
    info = g.attrs.asdict().get("layercal")
    return dict(info) if isinstance(info, Mapping) else {}


def jsonable(x: Any) -> Any:
    """``x`` as it reads back from a store's JSON attributes (non-JSON values as strings)."""
    return json.loads(json.dumps(x, default=str))


def open_for_write(
    path: str | os.PathLike[str], *, wait_s: float = 0.0, sole_writer: bool = True
) -> zarr.Group:
    """Open an existing store to resume filling it; refuses stores it cannot safely continue.

    ``wait_s``: how long to wait for another process (a sibling shard) to finish creating it.
    ``sole_writer``: no other process writes now, so temp files of killed writes may be removed.
    """
    path = Path(path)
    deadline = time.monotonic() + wait_s
    while True:
        info: dict[str, Any] = {}
        if (path / "zarr.json").exists():
            g = zarr.open_group(str(path), mode="r+", zarr_format=3)
            if attrs(g):
                info = check_format(g, str(path))
        if info.get("status", {}).get("created"):
            break
        if time.monotonic() >= deadline:
            if not (path / "zarr.json").exists():
                raise StoreError(f"{path} is not a layercal store (no zarr.json). Check --out.")
            raise StoreError(
                f"{path} was interrupted while being created; it holds no activations. "
                "Remove it and run the same command again without --resume."
            )
        time.sleep(0.5)
    if sole_writer:
        live = [rec for rec in read_claims(path) if is_live(rec)]
        if live:  # its temp files are not debris, and the blocks it holds are not ours to write
            raise BlockClaimedError(claimed_message(path, live[0]))
        for partial in path.rglob("*.partial"):  # temp files of a write killed mid-way
            partial.unlink(missing_ok=True)
    return g


def check_format(g: zarr.Group, where: str) -> dict[str, Any]:
    """Return the layercal attributes, refusing non-stores, unknown format versions and arrays
    with codecs outside SAFE_CODECS."""
    info = attrs(g)
    if info.get("format") != FORMAT_NAME:
        raise StoreError(f"{where} is a Zarr group but not a layercal activation store.")
    version = info.get("format_version")
    if version != FORMAT_VERSION:
        raise StoreError(
            f"{where} uses store format version {version}; this layercal reads version "
            f"{FORMAT_VERSION}. Use a layercal release that matches, or re-extract."
        )
    check_codecs(g, where)
    return info


def _codec_names(codecs: Any) -> Iterator[str]:
    """Every codec name in a v3 ``codecs`` list, including those nested in sharding."""
    for c in codecs if isinstance(codecs, list | tuple) else [codecs]:
        if not isinstance(c, Mapping):
            yield repr(c)
            continue
        yield str(c.get("name"))
        conf = c.get("configuration") or {}
        if isinstance(conf, Mapping):
            for key in ("codecs", "index_codecs"):
                if key in conf:
                    yield from _codec_names(conf[key])


def check_codecs(g: zarr.Group, where: str) -> None:
    """Refuse a group whose arrays are not Zarr v3 or use a codec outside SAFE_CODECS.

    Runs on metadata only, before any chunk is read: a store from elsewhere can carry an
    array whose codec executes code when decoding (pickle), and readers must never run it."""
    if g.metadata.zarr_format != 3:
        raise StoreError(f"{where} is a Zarr v{g.metadata.zarr_format} group; stores are Zarr v3.")
    try:
        with warnings.catch_warnings():  # other objects (README.md, a manifest) are not arrays
            warnings.filterwarnings("ignore", message="Object at .* is not recognized")
            members = list(g.arrays())
    except ValueError as e:  # zarr cannot parse an array's metadata (e.g. an unknown codec)
        raise StoreError(f"{where} holds array metadata layercal refuses to read: {e}") from e
    for name, a in members:
        meta = a.metadata.to_dict()
        if meta.get("zarr_format") != 3:
            raise StoreError(f"{where}: array {name!r} is not a Zarr v3 array; refusing it.")
        bad = sorted(set(_codec_names(meta.get("codecs", []))) - SAFE_CODECS)
        if bad:
            raise StoreError(
                f"{where}: array {name!r} uses codec {', '.join(bad)}, which layercal never "
                "writes and will not decode (a codec can run code, e.g. pickle). Do not use "
                "this store; ask its sender for one written by `layercal extract`."
            )


def layout_of(g: zarr.Group) -> Layout:
    lay = attrs(g)["layout"]
    return Layout(
        n_examples=lay["n_examples"],
        n_depth=lay["n_depth"],
        hidden=lay["hidden"],
        vocab=lay["vocab"],
        n_choices=lay["n_choices"],
        block=lay["block"],
    )


def norm_spec_from(
    final_norm_attrs: Mapping[str, Any], weight: np.ndarray, bias: np.ndarray | None
) -> NormSpec:
    """Build the :class:`NormSpec` recorded as ``attrs["final_norm"]`` plus its parameters."""
    fn = final_norm_attrs
    if fn["kind"] not in ("rmsnorm", "layernorm"):
        raise StoreError(f"unknown final norm kind {fn['kind']!r} in the store")
    return NormSpec(
        kind=fn["kind"],
        weight=np.asarray(weight),
        bias=None if bias is None else np.asarray(bias),
        eps=float(fn["eps"]),
        offset=float(fn["offset"]),
        softcap=None if fn["softcap"] is None else float(fn["softcap"]),
    )


def norm_spec(g: zarr.Group) -> NormSpec:
    """The final norm stored in the group, as a :class:`NormSpec`."""
    fn = attrs(g)["final_norm"]
    bias = np.asarray(array(g, "final_norm_bias")[...]) if fn["has_bias"] else None
    return norm_spec_from(fn, np.asarray(array(g, "final_norm_weight")[...]), bias)


def identity_diff(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between two identity records (empty when they match)."""
    keys = sorted(set(stored) | set(wanted))
    return [
        f"{k}: store has {stored.get(k)!r}, this run has {wanted.get(k)!r}"
        for k in keys
        if stored.get(k) != wanted.get(k)
    ]


def written_mask(g: zarr.Group) -> np.ndarray:
    return np.asarray(array(g, "written")[...], dtype=bool)


def blocks_todo(g: zarr.Group, shard: tuple[int, int] = (0, 1)) -> list[int]:
    """Blocks of this shard (``b % n == i``) not yet marked written."""
    i, n = shard
    lay = layout_of(g)
    done = written_mask(g)
    return [b for b in range(lay.n_blocks) if b % n == i and not done[lay.block_slice(b)].all()]


def write_block(g: zarr.Group, b: int, arrays: Mapping[str, np.ndarray]) -> str:
    """Write block ``b`` of every activation array the store has, then mark it written.

    ``arrays``: name -> (examples of the block, ...) values; optional arrays the store lacks (one
    created by an earlier layercal, being resumed) are left out. Returns the block's sha256."""
    lay = layout_of(g)
    sl = lay.block_slice(b)
    names = activation_arrays(g)
    missing = set(names) - set(arrays)
    if missing:
        raise StoreError(f"block {b}: missing arrays {sorted(missing)}")
    for name in names:
        data = np.asarray(arrays[name], dtype=np.float32)
        target = array(g, name)
        expected = (sl.stop - sl.start, *target.shape[1:])
        if data.shape != expected:
            raise StoreError(f"block {b}: {name} has shape {data.shape}, expected {expected}")
        target[sl] = data
    digest = sha256_bytes(*(np.asarray(arrays[k], dtype=np.float32) for k in names))
    array(g, "block_sha256")[b] = digest
    array(g, "written")[sl] = True
    return digest


def finalize(path: str | os.PathLike[str], extra_status: Mapping[str, Any]) -> None:
    """Mark a fully written store complete and consolidate its metadata (one read for remotes).

    Claims left by writers that died after marking their block are removed with the folder."""
    clear_dead_claims(path)
    g = zarr.open_group(str(path), mode="r+", zarr_format=3)
    info = attrs(g)
    info["status"] = jsonable({"created": True, "complete": True, **extra_status})
    g.attrs["layercal"] = info
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "consolidated metadata is not in the v3 spec"
        zarr.consolidate_metadata(str(path))


def remove_incomplete(path: str | os.PathLike[str]) -> None:
    """Delete a store this process created moments ago and never wrote activations to."""
    shutil.rmtree(path, ignore_errors=True)
