"""The dataset card (README.md) that pack and publish put next to a store.

Hugging Face reads the YAML header (licence, name, tags); people read the rest: what the store
holds, where it came from, the licence of the source questions, and how to open and verify it.
Storage options (credentials) are never written into the card.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from layercal.store._location import MANIFEST, human_bytes


def _open_snippet(target: str, packed: bool) -> str:
    if packed:
        return (
            "```python\n"
            "import xarray as xr, zarr\n"
            f'ds = xr.open_zarr(zarr.storage.ZipStore("{target}", mode="r"))  # lazy, dask-backed\n'
            'print(ds["resid"])  # (example, layer, hidden) residuals at the final prompt token\n'
            "```\n\n"
            "or, with layercal installed (checks the format version and completeness):\n\n"
            "```python\n"
            "from analyze import open_store\n"
            f'ds = open_store("{target}")\n'
            'print(ds["lens_logits"].isel(layer=-1))\n'
            "```\n"
        )
    return (
        "```python\n"
        "import xarray as xr\n"
        f'ds = xr.open_zarr("{target}", consolidated=True)  # lazy; add storage_options={{...}}\n'
        'print(ds["resid"])  # (example, layer, hidden) residuals at the final prompt token\n'
        "```\n\n"
        "or, with layercal installed (checks the format version and completeness):\n\n"
        "```python\n"
        "from analyze import open_store\n"
        f'ds = open_store("{target}")  # storage_options={{...}} for private buckets\n'
        'print(ds["lens_logits"].isel(layer=-1))\n'
        "```\n"
    )


def dataset_card(
    info: Mapping[str, Any], target: str, *, files: int, stored_bytes: int, packed: bool = False
) -> str:
    """README.md text for the store described by ``info`` (``store_info``) published at ``target``.

    ``files`` and ``stored_bytes``: what was written at the target (the card included)."""
    m, ds, t, lay, c, p = (
        info[k] for k in ("model", "dataset", "template", "layout", "completeness", "provenance")
    )
    licence = ds["licence"]
    complete = c["written_examples"] == c["n_examples"]
    subjects = ds["subjects"] or []
    ratio = info["size"]["compression_ratio"]
    arrays = "\n".join(
        f"| `{r['name']}` | {' x '.join(map(str, r['shape']))} | {r['dtype']} |"
        for r in info["arrays"]
    )
    runs = "\n".join(
        f"- {r['started']} on host `{r['host']}`, shard {r['shard']}" for r in p["runs"]
    )
    libs = ", ".join(f"{k} {v}" for k, v in p["libraries"].items()) or "not recorded"
    name = f"{m['name']} on {ds['name']}/{ds['split']}"
    return f"""---
license: {licence.lower() if licence != "unknown" else "unknown"}
pretty_name: "layercal activations: {name}"
tags: [layercal, logit-lens, calibration, interpretability, zarr]
---

# layercal activation store: {name}

Residual-stream activations at the final prompt token, for every layer, of **{m["name"]}** on
the multiple-choice benchmark **{ds["name"]}** (split `{ds["split"]}`), with the model's own
answer logits and the logit-lens logits. Written by layercal (store format
`{info["format"]}`): a Zarr v3 group readable with xarray, zarr or any Zarr v3 reader.

## Open it

{_open_snippet(target, packed)}
## Contents

- {lay["n_examples"]} examples x {lay["n_depth"]} depths (embedding output + one per block) x
  {lay["hidden"]} hidden; vocabulary {lay["vocab"]}; {lay["n_choices"]} answer options
- complete: {"yes" if complete else f"no: {c['written_examples']}/{c['n_examples']} examples written (use `allow_partial=True`)"}
- size: {human_bytes(stored_bytes)} in {files} files
  {f"(numeric arrays compressed {ratio:.2f}x)" if ratio else ""}

| array | shape | dtype |
|---|---|---|
{arrays}

## Provenance

- model: `{m["name"]}`; Hugging Face id `{m["hub_id"] or "-"}`, revision `{m["revision"] or "-"}`,
  architecture {m["architecture"] or "-"}, computed in {m["dtype"]}; source {m["source"] or "-"}
- dataset: `{ds["name"]}` split `{ds["split"]}`, category {ds["category"] or "-"},
  {len(subjects)} subjects{": " + ", ".join(subjects) if subjects else ""};
  content sha256 `{ds["sha256"] or "-"}`
- prompt template: `{t["name"]}`, sha256 `{t["sha256"]}`
- libraries: {libs}
- layercal git commit: `{p["git_commit"] or "-"}`
- extraction runs:
{runs or "- not recorded"}

## Licence

The questions, options and labels come from {ds["name"]}, licence **{licence}**
{"(see the benchmark's own terms before redistributing)" if licence == "unknown" else ""}.
The activations are outputs of {m["name"]}; its model licence applies to them.

## Verify it

```
layercal store verify {target}
```

recomputes the W_U sha256, the sha256 of every written block, the logit lens at the last layer
against the model's logits on a sample, and the size and sha256 of every object listed in
`{MANIFEST}`; it exits non-zero naming the array, block or object that differs.
"""
