"""Store tools: inspect, verify, pack, publish and merge activation stores (torch-free).

They work at the level of the store format (:mod:`layercal.format`) and neither stage needs
them, so they live beside it; ``layercal store ...`` (:mod:`layercal.store.cli`) runs them.

The functions behind ``layercal store info|verify|pack|publish|merge``:

- :func:`store_info` / :func:`format_info`: what a store holds, sizes, completeness, provenance.
- :func:`verify_store`: recompute checksums and the lens self-check; a :class:`Report`.
- :func:`pack`: one ``.zip`` (Zarr ZipStore layout) to send; ``analyze.open_store`` opens it.
- :func:`publish`: copy to any fsspec destination with a dataset card and a manifest.
- :func:`merge`: combine shard stores written by separate machines into one.

Every one takes a local folder, a packed ``.zip`` or an fsspec URL (with ``storage_options``).
"""

from __future__ import annotations

from layercal.store._card import dataset_card
from layercal.store._info import dataset_licence, format_info, store_info
from layercal.store._location import CARD, MANIFEST, human_bytes
from layercal.store._merge import Merged, merge
from layercal.store._publish import WARN_FILES, Shipped, pack, publish
from layercal.store.verify import Problem, Report, tolerance, verify_store

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
    "human_bytes",
    "merge",
    "pack",
    "publish",
    "store_info",
    "tolerance",
    "verify_store",
]
