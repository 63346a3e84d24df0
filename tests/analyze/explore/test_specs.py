"""The page's Vega-Lite specs: every colour legend shows whole store names."""

from __future__ import annotations

import json

from analyze.explore.specs import LEGEND_LABEL_LIMIT, all_specs


def _legends(node: object) -> list[dict]:
    """Every ``legend`` object in a spec (nested charts included)."""
    found: list[dict] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "legend" and isinstance(value, dict):
                found.append(value)
            else:
                found += _legends(value)
    elif isinstance(node, list):
        for value in node:
            found += _legends(value)
    return found


def test_store_legends_do_not_cut_a_lens_name():
    """A store and the same store through a fitted lens differ only at the end of their names
    ("... · lens-t"): Vega-Lite's default 160 px label limit cut exactly that part."""
    stores = [
        "qwen2.5-coder-1.5b · mmlu/test 10 subjects",
        "qwen2.5-coder-1.5b · mmlu/test 10 subjects · lens-t",
    ]
    specs = all_specs(stores, ["accuracy", "ece"])
    legends = [lg for spec in specs.values() for lg in _legends(spec)]
    assert legends, "no colour legend found"
    assert all(lg.get("labelLimit") == LEGEND_LABEL_LIMIT >= 400 for lg in legends)
    assert "lens-t" in json.dumps(specs)
