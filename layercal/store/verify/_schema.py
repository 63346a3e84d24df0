"""``store verify``, schema half: the keys and value types of the root ``zarr.json``.

A changed byte in a JSON key (``"identity"`` -> ``"identitx"``) leaves valid JSON in which a
reader silently finds nothing; so the keys that zarr and the store contract rely on are required
here, with their types. Keys the contract does not fix (provenance details, later additions) are
allowed; a change inside their free text is caught only by the manifest that pack/publish write.
"""

from __future__ import annotations

from typing import Any

from layercal.store.verify.report import Report

ROOT_KEYS = {"attributes", "zarr_format", "node_type"}
CONSOLIDATED_KEYS = {"kind", "must_understand", "metadata"}
# section of attrs["layercal"] ("" = its top level) -> required key -> allowed types
REQUIRED: dict[str, dict[str, tuple[type, ...]]] = {
    "": {
        "format": (str,),
        "format_version": (int,),
        "identity": (dict,),
        "provenance": (dict,),
        "layout": (dict,),
        "final_norm": (dict,),
        "has_lm_head_bias": (bool,),
        "status": (dict,),
    },
    "layout": {
        k: (int,)
        for k in (
            "n_examples",
            "n_depth",
            "hidden",
            "vocab",
            "n_choices",
            "block",
            "chunk_examples",
        )
    },
    "final_norm": {
        "kind": (str,),
        "eps": (float, int),
        "offset": (float, int),
        "softcap": (float, int, type(None)),
        "has_bias": (bool,),
    },
    "identity": {
        "model": (str,),
        "dtype": (str,),
        "dataset": (str,),
        "split": (str,),
        "answer_token_ids": (list,),
        "w_u_sha256": (str,),
        "template_sha256": (str,),
        "dataset_sha256": (str,),
        "revision": (str, type(None)),
    },
    "status": {"created": (bool,), "complete": (bool,)},
}
EXACT = {"layout", "final_norm"}  # sections whose keys are all fixed by layercal.format


def _typename(t: tuple[type, ...]) -> str:
    return " or ".join("null" if x is type(None) else x.__name__ for x in t)


def check_root_schema(root: dict[str, Any], rep: Report) -> dict[str, Any] | None:
    """Zarr's keys of the root object, then ``attributes.layercal`` section by section.

    Returns the layercal attributes when their required keys are all there, else None."""
    where = "zarr.json"
    extra = set(root) - ROOT_KEYS - {"consolidated_metadata"}
    for key in sorted((ROOT_KEYS - set(root)) | extra):
        rep.fail(where, f"root key {key!r} {'unexpected' if key in extra else 'missing'}")
    if root.get("zarr_format") != 3 or root.get("node_type") != "group":
        rep.fail(where, "zarr_format must be 3 and node_type 'group'")
    cons = root.get("consolidated_metadata")
    if cons is not None and (
        not isinstance(cons, dict)
        or set(cons) != CONSOLIDATED_KEYS
        or cons.get("kind") != "inline"
        or cons.get("must_understand") is not False
    ):
        rep.fail(where, "consolidated_metadata header damaged (kind/must_understand/metadata)")
    attrs = root.get("attributes")
    info = attrs.get("layercal") if isinstance(attrs, dict) else None
    if not isinstance(info, dict):
        rep.fail(where, "attributes.layercal missing: not a layercal store, or its key was damaged")
        return None
    fine = True
    for section, keys in REQUIRED.items():
        part = info if not section else info.get(section)
        if not isinstance(part, dict):
            continue  # reported as a missing or mistyped key of the top level
        label = f"attributes.layercal{'.' + section if section else ''}"
        for key, types in keys.items():
            if key not in part:
                rep.fail(where, f"{label}.{key} missing (a key damaged or removed)")
                fine = False
            elif not isinstance(part[key], types) or (
                isinstance(part[key], bool) and bool not in types
            ):
                rep.fail(where, f"{label}.{key} = {part[key]!r} is not {_typename(types)}")
                fine = False
        if section in EXACT:
            for key in sorted(set(part) - set(keys)):
                rep.fail(where, f"{label} has an unexpected key {key!r} (a key damaged?)")
    norm = info.get("final_norm")
    if isinstance(norm, dict) and norm.get("kind") not in ("rmsnorm", "layernorm"):
        rep.fail(where, f"final_norm.kind {norm.get('kind')!r} is not rmsnorm or layernorm")
    return info if fine else None
