"""``layercal store verify``: recompute what the store recorded about itself.

Checks, in order: every ``zarr.json`` (parses, equals its consolidated copy), the contract layout
and attributes (:mod:`layercal.store.verify._meta`), the W_U sha256 (``identity.w_u_sha256``), each
written block's sha256 (``block_sha256``, the same function as ``format.write_block``), the
objects of each written block (present, decodable, no fill values), ``lens_entropy`` within
[0, log vocab] where the store records it, the logit lens on the last layer vs the model's logits
on a sample of examples, and the manifest when pack/publish wrote one.
A damaged store never raises: every problem is reported with the array, block and object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from layercal import format as fmt
from layercal.lens import NormSpec, lens_logits, recorded_dtype, self_check_tolerance
from layercal.store._location import Location, chunk_key
from layercal.store.verify._attrs import attribute, entropy_outside
from layercal.store.verify._capture import check_captures
from layercal.store.verify._meta import (
    HEX64,
    Report,
    check_attrs,
    check_layout,
    check_metadata_files,
    open_arrays,
)
from layercal.store.verify._objects import Unchecked, check_manifest, check_object
from layercal.store.verify._schema import check_root_schema

tolerance = self_check_tolerance  # the extraction self-check's bound (layercal.lens)


def _read(a: zarr.Array, sl: slice | None, rep: Report, where: str) -> np.ndarray | None:
    """Decode ``a[sl]``; on failure record the problem (zarr and codecs raise many types)."""
    try:
        return np.asarray(a[...] if sl is None else a[sl])
    except Exception as e:
        rep.fail(where, f"cannot be decoded: {type(e).__name__}: {str(e)[:160]}")
        return None


def can_reencode(info: dict[str, Any], rep: Report) -> bool:
    """Whether objects can be compared with a re-encoding: the writer's numcodecs is ours."""
    import numcodecs

    wrote = info.get("provenance", {}).get("libraries", {}).get("numcodecs")
    if wrote == numcodecs.__version__:
        rep.notes.append("compressed objects compared byte for byte with a re-encoding")
        return True
    rep.notes.append(
        f"store written with numcodecs {wrote or '(not recorded)'}, running "
        f"{numcodecs.__version__}: compressed bytes not compared with a re-encoding, so a "
        "change in a bit the decoder ignores would go unseen (the manifest would catch it)"
    )
    return False


def check_bytes(
    loc: Location, key: str, coords: tuple[int, ...], rep: Report, where: str, canonical: bool
) -> bool:
    """The compressed structure of object ``key`` (:mod:`layercal.store.verify._objects`); False if bad."""
    try:
        meta = loc.read_json(key.split("/", 1)[0] + "/zarr.json")
        problem = check_object(meta, coords, loc.read(key), canonical=canonical)
    except Unchecked as e:
        note = f"objects with {e} are not checked byte-wise"
        if note not in rep.notes:
            rep.notes.append(note)
        return True
    except (OSError, ValueError, KeyError) as e:  # unreadable object or metadata
        problem = f"cannot be read: {type(e).__name__}: {e}"
    if problem:
        rep.fail(where, problem)
    return problem is None


def check_w_u(
    w: zarr.Array, loc: Location, info: dict[str, Any], rep: Report, canonical: bool
) -> None:
    """sha256 of W_U, read chunk by chunk (C order, so equal to ``fmt.sha256_bytes(W_U)``)."""
    import hashlib

    rows = w.chunks[0]
    h = hashlib.sha256()
    for c in range(-(-w.shape[0] // rows)):
        key = chunk_key(w, (c, 0))
        where = f"W_U chunk {c}, object {key}"
        if loc.exists(key) and not check_bytes(loc, key, (c, 0), rep, where, canonical):
            return
        part = _read(w, slice(c * rows, (c + 1) * rows), rep, where)
        if part is None:
            return
        if not loc.exists(key):
            rep.notes.append(f"W_U object {key} is absent (read as fill value 0)")
        h.update(part.astype("<f4", copy=False).tobytes())
    want = info.get("identity", {}).get("w_u_sha256")
    if want is None:
        rep.notes.append("W_U: no identity.w_u_sha256 recorded, not checked")
    elif h.hexdigest() != want:
        rep.fail(
            "W_U", f"sha256 {h.hexdigest()[:16]}... != identity.w_u_sha256 {str(want)[:16]}..."
        )
    else:
        rep.notes.append("W_U: sha256 matches identity.w_u_sha256")


def _lens_parts(
    group: zarr.Group, rep: Report
) -> tuple[np.ndarray, np.ndarray | None, NormSpec] | None:
    """The answer-token rows of W_U and lm_head_bias, and the final norm (None when unreadable)."""
    try:
        ids = np.asarray(fmt.array(group, "answer_token_ids")[...], dtype=np.int64)
        w = np.asarray(fmt.array(group, "W_U").oindex[ids, :])
        bias = None
        if "lm_head_bias" in group:
            bias = np.asarray(fmt.array(group, "lm_head_bias").oindex[ids])
        return w, bias, fmt.norm_spec(group)
    except Exception as e:  # already reported array by array; the lens cannot be computed
        rep.fail("lens", f"cannot build the lens for the self-check: {type(e).__name__}: {e}")
        return None


@dataclass
class _Blocks:
    """What ``check_blocks`` needs for every block, and what it counts across them."""

    arrays: dict[str, zarr.Array]
    loc: Location
    layout: fmt.Layout
    lens: tuple[np.ndarray, np.ndarray | None, NormSpec]
    dtype: str | None
    acts: tuple[str, ...]
    absent: str  # said after a digest mismatch: a removed optional array also changes it
    picked: set[int]  # examples of the lens self-check
    canonical: bool
    rep: Report
    n_ok: int = 0
    n_written: int = 0
    max_diff: float = 0.0
    n_checked: int = 0


def _marked_written(
    st: _Blocks, b: int, written: np.ndarray, digest: str, complete: bool, span: str
) -> bool:
    """Whether block ``b`` is marked written (problems with its marks are reported)."""
    rep, marked = st.rep, written[st.layout.block_slice(b)]
    if marked.any() and not marked.all():
        rep.fail(f"written {span}", f"only {int(marked.sum())}/{marked.size} examples marked")
    if not marked.all():
        if digest:
            msg = "has a recorded sha256 but is not marked written (a write was interrupted)"
            if complete:
                rep.fail(f"written {span}", msg + " although status says complete")
            else:
                rep.notes.append(f"{span} {msg}; resume rewrites it")
        return False
    return True


def _read_block(st: _Blocks, b: int, span: str) -> dict[str, np.ndarray] | None:
    """The block's activation arrays: objects present, well formed, decodable, without NaN;
    None (problems reported) when any is not."""
    sl = st.layout.block_slice(b)
    blk: dict[str, np.ndarray] = {}
    for name in st.acts:
        a = st.arrays[name]
        coords = (b,) + (0,) * (a.ndim - 1)
        key = chunk_key(a, coords)
        where = f"{name} {span}, object {key}"
        if not st.loc.exists(key):
            st.rep.fail(where, "the object is missing although the block is marked written")
            continue
        if not check_bytes(st.loc, key, coords, st.rep, where, st.canonical):
            continue
        data = _read(a, sl, st.rep, where)
        if data is None:
            continue
        n_nan = int(np.isnan(data).sum())
        if n_nan:
            st.rep.fail(where, f"{n_nan} NaN values (fill value: inner chunks missing)")
            continue
        blk[name] = data
    return blk if len(blk) == len(st.acts) else None


def _check_content(st: _Blocks, b: int, blk: dict[str, np.ndarray], digest: str, span: str) -> None:
    """The block's sha256 (which array changed, when it does not match), ``lens_entropy``
    within [0, log vocab], and the lens self-check on the sampled examples."""
    sl, rep = st.layout.block_slice(b), st.rep
    got = fmt.sha256_bytes(*(blk[k].astype(np.float32) for k in st.acts))
    tol = tolerance(st.dtype, blk["model_logits"])
    if got != digest:
        why = attribute(blk, st.lens, tol, st.arrays, sl.start)
        rep.fail(
            span, f"content sha256 {got[:16]}... != recorded {digest[:16]}...; {why}{st.absent}"
        )
        return
    st.n_ok += 1
    if "lens_entropy" in blk:  # recorded as written, yet impossible: the writer erred
        outside = entropy_outside(blk["lens_entropy"], st.layout.vocab, tol)
        if outside.any():
            rep.fail(
                f"lens_entropy {span}",
                f"{int(outside.sum())} values outside [0, log vocab], impossible for an "
                f"entropy (first {float(blk['lens_entropy'][outside][0]):.4g})",
            )
    rows = [i - sl.start for i in range(sl.start, sl.stop) if i in st.picked]
    if rows:
        w, bias, spec = st.lens
        z = lens_logits(blk["resid"][rows, -1], w, spec, bias)
        diff = float(np.abs(z - blk["model_logits"][rows]).max())
        st.max_diff, st.n_checked = max(st.max_diff, diff), st.n_checked + len(rows)
        if not diff <= tol:
            rep.fail(span, f"lens(last layer) differs from model_logits by {diff:.3g} > {tol:.3g}")


def check_blocks(
    group: zarr.Group,
    arrays: dict[str, zarr.Array],
    loc: Location,
    info: dict[str, Any],
    layout: fmt.Layout,
    sample: int,
    rep: Report,
    seed: int = 0,
    canonical: bool = False,
) -> None:
    """Per block: mask vs recorded sha, objects present, decodable, sha256, lens self-check."""
    written = _read(arrays["written"], None, rep, "written")
    sha = _read(arrays["block_sha256"], None, rep, "block_sha256")
    lens = _lens_parts(group, rep)
    if written is None or sha is None or lens is None:
        return
    complete = bool(info.get("status", {}).get("complete"))
    acts = fmt.activation_arrays(arrays)
    lacking = sorted(set(fmt.ACTIVATION_ARRAYS) - set(acts))
    absent = ""
    if lacking:
        absent = f"; this store has no {', '.join(lacking)} (older store, or removed?)"
        rep.notes.append(
            f"no {', '.join(lacking)} (optional: stores written before layercal recorded it "
            "lack it); block sha256 over " + ", ".join(acts)
        )
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(written)
    picked = set(rng.choice(pool, size=min(sample, pool.size), replace=False).tolist())
    dtype = recorded_dtype(info)
    st = _Blocks(arrays, loc, layout, lens, dtype, acts, absent, picked, canonical, rep)
    for b in range(layout.n_blocks):
        sl = layout.block_slice(b)
        span = f"block {b} (examples {sl.start}-{sl.stop - 1})"
        digest = str(sha[b])
        if not _marked_written(st, b, written, digest, complete, span):
            continue
        st.n_written += 1
        if not HEX64.fullmatch(digest):
            rep.fail(f"block_sha256 {span}", f"marked written but its sha256 is {digest[:70]!r}")
            continue
        blk = _read_block(st, b, span)
        if blk is not None:
            _check_content(st, b, blk, digest, span)
    rep.notes.append(
        f"blocks: {st.n_ok}/{st.n_written} written blocks match their sha256 "
        f"({layout.n_blocks} in all)"
    )
    if complete and st.n_written < layout.n_blocks:
        rep.fail(
            "zarr.json attrs",
            f"status says complete but only {st.n_written}/{layout.n_blocks} blocks are written",
        )
    if st.n_checked:
        rep.notes.append(
            f"self-check: lens(last layer) vs model_logits on {st.n_checked} examples, max "
            f"|diff| {st.max_diff:.2e}"
        )


def check_other_arrays(arrays: dict[str, zarr.Array], rep: Report) -> None:
    """Decode every remaining array (labels, questions, norms): damage shows as a decode error."""
    skip = {*fmt.ACTIVATION_ARRAYS, *fmt.CAPTURE_ARRAYS, *fmt.CAPTURE_WEIGHTS}
    skip |= {"W_U", "written", "block_sha256", "answer_token_ids"}
    for name in sorted(set(arrays) - skip):
        _read(arrays[name], None, rep, name)


def verify_store(
    url: str,
    *,
    sample: int = 256,
    storage_options: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> Report:
    """Verify the store at ``url`` (folder, packed ``.zip`` or fsspec URL); see the module doc.

    ``sample``: how many written examples get the lens-equals-logits self-check (0: none)."""
    loc = Location(url, storage_options or {})
    rep = Report(url)
    _check_contents(loc, rep, sample, seed)
    check_manifest(loc, rep)  # independent of the rest: runs even when the root is unreadable
    return rep


def _check_contents(loc: Location, rep: Report, sample: int, seed: int) -> None:
    root = check_metadata_files(loc, rep)
    if root is None or check_root_schema(root, rep) is None:
        return
    try:
        group = loc.open_group(consolidated=False)
        info = fmt.check_format(group, loc.url)
        layout = fmt.layout_of(group)
    except Exception as e:  # metadata that parses but that zarr or the format rejects
        rep.fail("zarr.json", f"cannot open the store: {type(e).__name__}: {e}")
        return
    arrays = open_arrays(group, loc, rep)
    check_attrs(group, info, layout, rep)
    if check_layout(arrays, info, layout, rep):
        canonical = can_reencode(info, rep)
        check_w_u(arrays["W_U"], loc, info, rep, canonical)
        check_captures(arrays, info, rep)
        check_blocks(group, arrays, loc, info, layout, sample, rep, seed, canonical)
    check_other_arrays(arrays, rep)
