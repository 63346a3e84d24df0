"""``store verify``, metadata half: every ``zarr.json``, the contract layout, the attributes.

Each check appends problems (what failed, where) to a :class:`~layercal.store.verify.Report`;
nothing raises on a damaged store, so one run lists every problem it can see.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import zarr

from layercal import format as fmt
from layercal.store._location import Location
from layercal.store.verify.report import Report

HEX64 = re.compile(r"[0-9a-f]{64}")


def check_metadata_files(loc: Location, rep: Report) -> dict[str, Any] | None:
    """Parse every ``zarr.json``; compare each with its copy in the consolidated metadata.

    Returns the root metadata, or None when it cannot be read (nothing else can be checked).
    """
    keys = sorted(k for k in loc.sizes() if k == "zarr.json" or k.endswith("/zarr.json"))
    if "zarr.json" not in keys:
        rep.fail("zarr.json", "the root metadata object is missing: this is not a Zarr v3 store")
        return None
    parsed: dict[str, dict[str, Any]] = {}
    for key in keys:
        try:
            parsed[key] = loc.read_json(key)
        except (ValueError, OSError) as e:
            rep.fail(key, f"unreadable metadata: {e}")
    root = parsed.get("zarr.json")
    if root is None:
        return None
    consolidated = root.get("consolidated_metadata")
    if consolidated is not None:
        members = consolidated.get("metadata", {}) if isinstance(consolidated, dict) else {}
        for name, meta in sorted(members.items()):
            key = f"{name}/zarr.json"
            if key not in loc.sizes():
                rep.fail(key, "listed in the consolidated metadata but the object is missing")
            elif key in parsed and parsed[key] != meta:
                rep.fail(
                    key,
                    "differs from its copy in the consolidated metadata (root zarr.json): "
                    "one of the two was changed",
                )
        extra = sorted(
            k for k in parsed if k != "zarr.json" and k[: -len("/zarr.json")] not in members
        )
        if extra:
            rep.notes.append(f"not in the consolidated metadata (added later?): {', '.join(extra)}")
    n_ok = len(keys) - sum(1 for p in rep.problems if p.where.endswith("zarr.json"))
    rep.notes.append(
        f"metadata: {n_ok}/{len(keys)} zarr.json objects parse"
        + (", consolidated copy matches" if consolidated is not None else " (not consolidated)")
    )
    return root


def expected_arrays(
    info: dict[str, Any], layout: fmt.Layout, present: Iterable[str] = ()
) -> dict[str, tuple[tuple[int, ...], tuple[str, ...]]]:
    """Contract array name -> (shape, dimension names) for ``layout`` (format.create_store).

    ``present``: the arrays the store has; optional activation arrays are expected only then,
    and captured ones (``mlp_last`` and ``w_out_last``) then or when ``info["capture"]`` names
    them (their neuron count comes from there: -1 when it does not say)."""
    n, L, d, V, K = layout.n_examples, layout.n_depth, layout.hidden, layout.vocab, layout.n_choices
    ex = ("example",)
    raw = info.get("capture")
    capture: dict[str, Any] = raw if isinstance(raw, dict) else {}
    neurons = (capture.get("mlp_last") or {}).get("neurons") if capture else None
    sizes = {"example": n, "layer": L, "hidden": d, "choice": K}
    sizes["neuron"] = neurons if isinstance(neurons, int) else -1
    declared = [c for c in capture if c in fmt.CAPTURE_ARRAYS]
    out: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {}
    for name in fmt.activation_arrays([*present, *declared]):
        dims = fmt.activation_dims(name)
        out[name] = (tuple(sizes[dim] for dim in dims), dims)
        if name in fmt.CAPTURE_OF:
            weights = fmt.CAPTURE_OF[name][1]
            wdims = fmt.CAPTURE_WEIGHTS[weights]
            out[weights] = (tuple(sizes[dim] for dim in wdims), wdims)
    out |= {
        "written": ((n,), ex),
        "block_sha256": ((layout.n_blocks,), ("block",)),
        "example": ((n,), ex),
        "layer": ((L,), ("layer",)),
        "choice": ((K,), ("choice",)),
        "question": ((n,), ex),
        "choice_text": ((n, K), ("example", "choice")),
        "choice_mask": ((n, K), ("example", "choice")),
        "label": ((n,), ex),
        "n_tokens": ((n,), ex),
        "answer_token_ids": ((K,), ("choice",)),
        "W_U": ((V, d), ("vocab", "hidden")),
        "final_norm_weight": ((d,), ("hidden",)),
    }
    out.update({name: ((n,), ex) for name in fmt.EXAMPLE_COORDS})
    if info.get("has_lm_head_bias"):
        out["lm_head_bias"] = ((V,), ("vocab",))
    if info.get("final_norm", {}).get("has_bias"):
        out["final_norm_bias"] = ((d,), ("hidden",))
    return out


def open_arrays(group: zarr.Group, loc: Location, rep: Report) -> dict[str, zarr.Array]:
    """Every top-level array, each opened from its own ``zarr.json`` (failures reported)."""
    names = sorted(
        k[: -len("/zarr.json")] for k in loc.sizes() if re.fullmatch(r"[^/]+/zarr\.json", k)
    )
    seen = {p.where for p in rep.problems}
    out: dict[str, zarr.Array] = {}
    for name in names:
        try:
            node = group[name]
        except Exception as e:  # invalid JSON (reported already) or metadata zarr rejects
            if f"{name}/zarr.json" not in seen:
                rep.fail(f"{name}/zarr.json", f"not valid array metadata: {type(e).__name__}: {e}")
            continue
        if isinstance(node, zarr.Array):
            out[name] = node
    return out


def check_layout(
    arrays: dict[str, zarr.Array], info: dict[str, Any], layout: fmt.Layout, rep: Report
) -> bool:
    """Arrays present with the shapes, dtypes, chunks and names the layout implies.

    Returns False when an array the checksums need (activations, ``written``, ``block_sha256``,
    the lens) is missing or misshapen: the W_U and block checks are then skipped."""
    core = {*fmt.ACTIVATION_ARRAYS, *fmt.CAPTURE_ARRAYS, "written", "block_sha256", "W_U"}
    core.add("answer_token_ids")
    core |= {"final_norm_weight", "final_norm_bias", "lm_head_bias"}
    fine = True
    for name, (shape, dims) in expected_arrays(info, layout, arrays).items():
        a = arrays.get(name)
        if a is None:
            rep.fail(name, "contract array missing (its zarr.json is absent or unreadable)")
            fine = fine and name not in core
            continue
        if tuple(a.shape) != shape:
            rep.fail(name, f"shape {tuple(a.shape)} but attrs layout implies {shape}")
            fine = fine and name not in core
        got_dims = tuple(a.metadata.dimension_names or ())  # type: ignore[union-attr]
        if got_dims != dims:
            rep.fail(name, f"dimension names {got_dims}, expected {dims}")
    if not fine:
        return False
    blk, L, d = layout.block, layout.n_depth, layout.hidden
    want = {
        "resid": ((info["layout"].get("chunk_examples"), 1, d), (blk, L, d), "float32"),
        "model_logits": ((blk, layout.n_choices), None, "float32"),
        "lens_logits": ((blk, L, layout.n_choices), None, "float32"),
        "lens_lse": ((blk, L), None, "float32"),
        "lens_entropy": ((blk, L), None, "float32"),
        "written": ((blk,), None, "bool"),
        "block_sha256": ((1,), None, None),
    }
    if "mlp_last" in arrays:  # one chunk per block, every neuron (the shape is checked above)
        want["mlp_last"] = ((blk, *arrays["mlp_last"].shape[1:]), None, "float32")
    want = {k: v for k, v in want.items() if k in arrays}  # optional ones: when present
    for name, (chunks, shards, dtype) in want.items():
        a = arrays[name]
        if tuple(a.chunks) != chunks or (a.shards and tuple(a.shards)) != shards:
            rep.fail(
                name,
                f"chunks {a.chunks} / shards {a.shards} do not match the layout block {blk} "
                f"(expected chunks {chunks}, shards {shards})",
            )
            fine = False
        if dtype is not None and str(a.dtype) != dtype:
            rep.fail(name, f"dtype {a.dtype}, expected {dtype}")
            fine = False
    return fine


def _agree(rep: Report, where: str, pairs: list[tuple[str, Any, Any]]) -> None:
    for label, a, b in pairs:
        if a is not None and b is not None and a != b:
            rep.fail(where, f"{label}: {a!r} vs {b!r} (the attributes contradict themselves)")


def check_attrs(group: zarr.Group, info: dict[str, Any], layout: fmt.Layout, rep: Report) -> None:
    """Cross-check the redundant parts of ``attrs["layercal"]`` with each other and the arrays."""
    ident, prov = info.get("identity", {}), info.get("provenance", {})
    if not isinstance(ident, dict) or not isinstance(prov, dict):
        rep.fail("zarr.json attrs", "identity or provenance is not a JSON object")
        return
    pm, pd, pt = (prov.get(k) or {} for k in ("model", "dataset", "template"))
    where = "zarr.json attrs"
    _agree(
        rep,
        where,
        [
            ("identity.model vs provenance.model.model", ident.get("model"), pm.get("model")),
            ("identity.dtype vs provenance.model.dtype", ident.get("dtype"), pm.get("dtype")),
            ("identity.revision vs provenance", ident.get("revision"), pm.get("revision")),
            ("identity.gguf_sha256 vs provenance", ident.get("gguf_sha256"), pm.get("gguf_sha256")),
            ("identity.dataset vs provenance.dataset.name", ident.get("dataset"), pd.get("name")),
            ("identity.split vs provenance.dataset.split", ident.get("split"), pd.get("split")),
            (
                "identity.dataset_sha256 vs provenance",
                ident.get("dataset_sha256"),
                pd.get("content_sha256"),
            ),
            (
                "identity.template_sha256 vs provenance",
                ident.get("template_sha256"),
                pt.get("sha256"),
            ),
            ("provenance.dataset.n_examples vs layout", pd.get("n_examples"), layout.n_examples),
        ],
    )
    text = pt.get("text")
    if isinstance(text, str) and ident.get("template_sha256") is not None:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if digest != ident["template_sha256"]:
            rep.fail(
                where,
                f"provenance.template.text hashes to {digest[:16]}, not identity.template_sha256",
            )
    for key in ("w_u_sha256", "template_sha256", "dataset_sha256", "gguf_sha256"):
        value = ident.get(key)
        if value is not None and not HEX64.fullmatch(str(value)):
            rep.fail(where, f"identity.{key} = {value!r} is not a sha256 hex digest")
    lay = info.get("layout", {})
    if lay.get("chunk_examples") != fmt.CHUNK_EXAMPLES:
        rep.fail(
            where, f"layout.chunk_examples {lay.get('chunk_examples')} != {fmt.CHUNK_EXAMPLES}"
        )
    answers = prov.get("answer_tokens")
    if answers is not None and len(answers) != layout.n_choices:
        rep.fail(where, f"{len(answers)} provenance.answer_tokens for {layout.n_choices} choices")
    try:
        ids = np.asarray(fmt.array(group, "answer_token_ids")[...]).astype(int).tolist()
    except Exception as e:  # a damaged chunk: zarr/numcodecs raise assorted types
        rep.fail("answer_token_ids", f"cannot be decoded: {type(e).__name__}: {e}")
        return
    if len(ids) != layout.n_choices:
        rep.fail("answer_token_ids", f"{len(ids)} ids for n_choices = {layout.n_choices}")
    if "answer_token_ids" in ident and list(ident["answer_token_ids"]) != ids:
        rep.fail(
            "answer_token_ids",
            f"array holds {ids}, identity.answer_token_ids {ident['answer_token_ids']}",
        )
    if any(not 0 <= i < layout.vocab for i in ids):
        rep.fail("answer_token_ids", f"{ids} outside the vocabulary 0..{layout.vocab - 1}")
    status = info.get("status", {})
    if not isinstance(status, dict) or not status.get("created"):
        rep.fail(where, "status.created is not set: the store's creation was interrupted")
