"""``layercal store info``: what a store holds, on one screen, without reading activations.

Reads the metadata, the ``written`` mask and ``block_sha256`` (a few bytes per block) and the
object listing (sizes); never the activations, so it is quick on remote stores too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from layercal import format as fmt
from layercal.store._location import CARD, MANIFEST, Location, human_bytes

# every array the store contract defines (layercal.format.create_store); anything else is derived
CONTRACT_ARRAYS: frozenset[str] = frozenset(
    {
        *fmt.ACTIVATION_ARRAYS,
        *fmt.CAPTURE_ARRAYS,
        *fmt.CAPTURE_WEIGHTS,
        "written",
        "block_sha256",
        "example",
        "layer",
        "choice",
        *fmt.EXAMPLE_COORDS,
        "question",
        "choice_text",
        "choice_mask",
        "label",
        "n_tokens",
        "answer_token_ids",
        "W_U",
        "lm_head_bias",
        "final_norm_weight",
        "final_norm_bias",
    }
)
LICENCES = {"mmlu": "MIT", "truthfulqa": "Apache-2.0"}


def dataset_licence(name: str | None) -> str:
    """Licence of the source benchmark: MMLU MIT, TruthfulQA Apache-2.0, anything else unknown."""
    for prefix, licence in LICENCES.items():
        if str(name or "").lower().startswith(prefix):
            return licence
    return "unknown"


def block_status(
    written: np.ndarray, sha: np.ndarray | Sequence[str], layout: fmt.Layout
) -> list[bool]:
    """Per block: fully marked written in the mask *and* carrying a recorded sha256."""
    return [
        bool(written[layout.block_slice(b)].all()) and bool(str(sha[b]))
        for b in range(layout.n_blocks)
    ]


def _array_rows(loc: Location, group: Any) -> list[dict[str, Any]]:
    sizes = loc.sizes()
    rows = []
    for name in sorted(group.array_keys()):
        a = group[name]
        stored = sum(  # chunk and shard objects only, as the compression ratio wants
            v for k, v in sizes.items() if k.startswith(f"{name}/") and k != f"{name}/zarr.json"
        )
        numeric = a.dtype.kind in "biuf"  # variable-length strings have no fixed nbytes
        nbytes = int(math.prod(a.shape)) * a.dtype.itemsize if numeric else None
        rows.append(
            {
                "name": name,
                "shape": list(a.shape),
                "dtype": str(a.dtype) if numeric else "str",
                "chunks": list(a.chunks),
                "shards": None if a.shards is None else list(a.shards),
                "stored_bytes": stored,
                "nbytes": nbytes,
            }
        )
    return rows


def store_info(url: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything ``store info`` shows, as a JSON-ready dict (see :func:`format_info`)."""
    loc = Location(url, storage_options or {})
    group = loc.open_group(consolidated=None)
    info = fmt.check_format(group, url)
    layout = fmt.layout_of(group)
    ident, prov = info.get("identity", {}), info.get("provenance", {})
    pmodel, pdata, ptemplate = (prov.get(k, {}) for k in ("model", "dataset", "template"))
    written = fmt.written_mask(group)
    blocks = block_status(written, np.asarray(fmt.array(group, "block_sha256")[...]), layout)
    arrays = _array_rows(loc, group)
    numeric = [r for r in arrays if r["nbytes"] is not None]
    stored_numeric = sum(r["stored_bytes"] for r in numeric)
    nbytes = sum(r["nbytes"] for r in numeric)
    top = {k.split("/")[0] for k in loc.sizes()} - {"zarr.json"}
    runs = info.get("runs", [])
    return {
        "store": url,
        "format": f"{info['format']} v{info['format_version']}",
        "model": {
            "name": ident.get("model"),
            "hub_id": pmodel.get("hub_id"),
            "source": pmodel.get("source", ident.get("model_source")),
            "revision": ident.get("revision"),
            "dtype": ident.get("dtype", pmodel.get("dtype")),
            "architecture": pmodel.get("architecture"),
        },
        "dataset": {
            "name": ident.get("dataset", pdata.get("name")),
            "split": ident.get("split", pdata.get("split")),
            "category": pdata.get("category"),
            "subjects": pdata.get("subjects"),
            "licence": dataset_licence(ident.get("dataset", pdata.get("name"))),
            "sha256": ident.get("dataset_sha256"),
        },
        "template": {"name": ptemplate.get("name"), "sha256": ident.get("template_sha256")},
        "layout": info["layout"],
        "arrays": arrays,
        "activations": list(fmt.activation_arrays(group)),
        "captures": {c: info.get("capture", {}).get(c, {}) for c in fmt.captures(group)},
        "size": {
            "stored_bytes": sum(loc.sizes().values()),
            "files": len(loc.sizes()),
            "numeric_stored_bytes": stored_numeric,
            "numeric_nbytes": nbytes,
            "compression_ratio": nbytes / stored_numeric if stored_numeric else None,
        },
        "completeness": {
            "written_examples": int(written.sum()),
            "n_examples": int(written.size),
            "written_blocks": int(sum(blocks)),
            "n_blocks": layout.n_blocks,
            "missing_blocks": [b for b, ok in enumerate(blocks) if not ok],
            "status": info.get("status", {}),
        },
        "provenance": {
            "libraries": prov.get("libraries", {}),
            "git_commit": prov.get("layercal_git_commit"),
            "runs": [
                {k: r.get(k) for k in ("started", "host", "shard", "batch_size")} for r in runs
            ],
        },
        "consolidated": "consolidated_metadata" in loc.read_json("zarr.json"),
        "derived": sorted(top - CONTRACT_ARRAYS - {CARD, MANIFEST}),
        "card": loc.exists(CARD),
        "manifest": loc.exists(MANIFEST),
    }


def _short(items: list[Any] | None, n: int = 4) -> str:
    if not items:
        return "-"
    more = f" ... (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(map(str, items[:n])) + more


def format_info(d: Mapping[str, Any]) -> str:
    """The one-screen text of ``store info``."""
    m, ds, t, s, c, p = (
        d[k] for k in ("model", "dataset", "template", "size", "completeness", "provenance")
    )
    lay = d["layout"]
    ratio = s["compression_ratio"]
    lines = [
        f"store:       {d['store']}  ({d['format']})",
        f"model:       {m['name']}  (hub {m['hub_id'] or '-'}, {m['architecture'] or '-'}, "
        f"{m['dtype']}, revision {m['revision'] or '-'})",
        f"dataset:     {ds['name']}/{ds['split']}  category {ds['category'] or '-'}, "
        f"subjects {_short(ds['subjects'])}  (licence {ds['licence']})",
        f"template:    {t['name']}  sha256 {str(t['sha256'])[:16]}",
        f"layout:      {lay['n_examples']} examples x {lay['n_depth']} depths x "
        f"{lay['hidden']} hidden, vocab {lay['vocab']}, {lay['n_choices']} choices, "
        f"block {lay['block']}",
        f"size:        {human_bytes(s['stored_bytes'])} in {s['files']} files; numeric arrays "
        f"{human_bytes(s['numeric_nbytes'])} -> {human_bytes(s['numeric_stored_bytes'])}"
        + (f" (compression {ratio:.2f}x)" if ratio else ""),
        f"complete:    {c['written_examples']}/{c['n_examples']} examples, "
        f"{c['written_blocks']}/{c['n_blocks']} blocks written"
        + (f"; missing blocks {_short(c['missing_blocks'], 8)}" if c["missing_blocks"] else "")
        + f"; status {'complete' if c['status'].get('complete') else 'incomplete'}, "
        f"metadata {'consolidated' if d['consolidated'] else 'not consolidated'}",
        "libraries:   " + (", ".join(f"{k} {v}" for k, v in p["libraries"].items()) or "-"),
        f"git commit:  {p['git_commit'] or '-'}",
        f"runs:        {len(p['runs'])}"
        + "".join(
            f"\n  {r['started']}  host {r['host']}  shard {r['shard']}" for r in p["runs"][:5]
        ),
        f"derived:     {_short(d['derived'], 8)}"
        + f"; dataset card {'yes' if d['card'] else 'no'}, manifest {'yes' if d['manifest'] else 'no'}",
        "arrays:",
    ]
    lacking = [a for a in fmt.ACTIVATION_ARRAYS if a not in d["activations"]]
    if lacking:  # an optional activation array (format.OPTIONAL_ACTIVATION_ARRAYS) is absent
        lines[-1] = f"arrays:      (no {', '.join(lacking)}: written before layercal recorded it)"
    for name, rec in d.get("captures", {}).items():
        lines.insert(
            -1,
            f"capture:     {name}: {rec.get('neurons')} neurons of block "
            f"{rec.get('block')} ({rec.get('where', '-')})",
        )
    for r in d["arrays"]:
        shards = f" shards {tuple(r['shards'])}" if r["shards"] else ""
        ratio_txt = (
            f" {r['nbytes'] / r['stored_bytes']:.2f}x" if r["nbytes"] and r["stored_bytes"] else ""
        )
        lines.append(
            f"  {r['name']:<18} {str(tuple(r['shape'])):<16} {r['dtype']:<8} "
            f"chunks {tuple(r['chunks'])}{shards}  {human_bytes(r['stored_bytes'])}{ratio_txt}"
        )
    return "\n".join(lines)
