"""Writing a store: create or join it, the block loop, what it records.

- :mod:`~extract.write.join`: create a store, or join one (``--resume``, sibling shards).
- :mod:`~extract.write.blocks`: the block loop (batches, the lens self-check, the writer thread,
  per-block writer claims).
- :mod:`~extract.write.provenance`: a store's identity, provenance and example metadata.
- :mod:`~extract.write.storeio`: write errors that say what to do, the run record, sizes.
"""

from __future__ import annotations

from extract.write.blocks import SelfCheckError, write_blocks
from extract.write.join import check_target, create_or_join
from extract.write.provenance import example_meta, identity, provenance
from extract.write.storeio import store_io_error

__all__ = [
    "SelfCheckError",
    "check_target",
    "create_or_join",
    "example_meta",
    "identity",
    "provenance",
    "store_io_error",
    "write_blocks",
]
