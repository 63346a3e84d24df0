"""Store tools: inspect, verify, pack, publish and merge activation stores (torch-free).

The functions behind ``layercal store info|verify|pack|publish|merge``:

- :func:`store_info` / :func:`format_info`: what a store holds, sizes, completeness, provenance.
- :func:`verify_store`: recompute checksums and the lens self-check; a :class:`Report`.
- :func:`pack`: one ``.zip`` (Zarr ZipStore layout) to send; ``analyze.store.open_store`` opens it.
- :func:`publish`: copy to any fsspec destination with a dataset card and a manifest.
- :func:`merge`: combine shard stores written by separate machines into one.

Every one takes a local folder, a packed ``.zip`` or an fsspec URL (with ``storage_options``).
"""

from __future__ import annotations

from analyze._card import dataset_card
from analyze._info import dataset_licence, format_info, store_info
from analyze._location import CARD, MANIFEST
from analyze._merge import Merged, merge
from analyze._publish import WARN_FILES, Shipped, pack, publish
from analyze._verify import tolerance, verify_store
from analyze._verify_meta import Problem, Report

__all__ = [
    "CARD",
    "MANIFEST",
    "WARN_FILES",
    "Merged",
    "Problem",
    "Report",
    "Shipped",
    "dataset_card",
    "dataset_licence",
    "format_info",
    "merge",
    "pack",
    "publish",
    "store_info",
    "tolerance",
    "verify_store",
]
