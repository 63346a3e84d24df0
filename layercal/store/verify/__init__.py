"""``layercal store verify``: recompute what a store recorded about itself, byte for byte.

- :mod:`~layercal.store.verify.report`: :class:`Report` and :class:`Problem`, what a run finds.
- ``_checks``: :func:`verify_store`, the order of the checks, the blocks (each written block's
  sha256, its objects, the lens self-check on a sample); :data:`tolerance`, the self-check's
  bound.
- ``_meta``: every ``zarr.json``, the contract layout and attributes; ``_schema``: the root
  metadata's keys and types; ``_objects``: the structure of each compressed object, below what
  zarr checks, and the manifest; ``_attrs``: which array of a block a changed digest points to.
"""

from __future__ import annotations

from layercal.store.verify._checks import tolerance, verify_store
from layercal.store.verify.report import Problem, Report

__all__ = ["Problem", "Report", "tolerance", "verify_store"]
