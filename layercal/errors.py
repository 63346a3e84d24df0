"""The exceptions of the store contract (shared by layercal.format and layercal.claims)."""

from __future__ import annotations


class StoreError(RuntimeError):
    """A store cannot be created, resumed or read as asked; the message says what to do."""


class StoreExistsError(StoreError, FileExistsError):
    """A new store was asked for at a path that already holds one."""


class BlockClaimedError(StoreError):
    """Another live writer owns a block this process was about to write."""
