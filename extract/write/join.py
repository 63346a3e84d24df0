"""Create a new store, or join one: resume it, or fill other blocks beside sibling shards."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from extract.config import ExtractConfig
from extract.write.storeio import store_io_error
from layercal import format as fmt
from layercal.lens import NormSpec


def check_target(out: Path, cfg: ExtractConfig) -> None:
    """Refuse an existing store without --resume (or --shard), and --resume without a store."""
    sharded = cfg.shard[1] > 1
    if out.exists() and not (cfg.resume or sharded):
        raise fmt.StoreError(
            f"{out} already exists. Pass --resume to continue filling it, or choose another --out."
        )
    if cfg.resume and not out.exists() and not sharded:
        raise fmt.StoreError(f"--resume given but {out} does not exist. Drop --resume to start it.")


def create_or_join(
    out: Path,
    layout: fmt.Layout,
    *,
    sharded: bool,
    identity: dict[str, Any],
    new_store: Callable[[], dict[str, Any]],
    w_u: np.ndarray | fmt.RowSource,
    bias: np.ndarray | None,
    norm: NormSpec,
    answer_ids: list[int],
    mlp_last: fmt.MlpLastCapture | None = None,
) -> tuple[zarr.Group, bool]:
    """The store to fill, and whether this run created it.

    A missing store is created (``new_store()`` gives its ``meta`` and ``provenance``, built only
    then); when a sibling shard creates it first, or it exists, it is joined, after checking that
    it was started with the same ``identity`` and layout."""
    if not out.exists():
        extra = new_store()
        try:
            g = fmt.create_store(
                out,
                layout,
                extra["meta"],
                w_u=w_u,
                lm_head_bias=bias,
                norm=norm,
                answer_token_ids=np.array(answer_ids),
                attrs={"identity": identity, "provenance": extra["provenance"], "runs": []},
                mlp_last=mlp_last,
            )
            return g, True
        except FileExistsError:  # a sibling shard created it first: join it below
            pass
        except OSError as e:  # nothing of it is usable: do not leave a half-created store
            fmt.remove_incomplete(out)
            raise store_io_error(out, "create", e, resumable=False) from e
    g = fmt.open_for_write(out, wait_s=300.0 if sharded else 0.0, sole_writer=not sharded)
    stored = fmt.attrs(g)["identity"]
    diffs = fmt.identity_diff(stored, fmt.jsonable(identity))
    if diffs:
        hint = "\nUse the same model, template and dataset, or write to a new --out."
        if stored.get("capture") != identity.get("capture"):
            want = ",".join(stored.get("capture") or [])
            hint += (
                f"\nThe store was started with --capture {want}: pass it again."
                if want
                else "\nThe store was started without --capture: drop it to resume."
            )
        if stored.get("dtype") != identity.get("dtype"):
            hint += (
                f"\n--dtype auto picks by the hardware: pass --dtype {stored.get('dtype')} to "
                "resume this store on this machine."
            )
        raise fmt.StoreError(
            f"refusing to resume {out}: it was started by a different run.\n  "
            + "\n  ".join(diffs)
            + hint
        )
    if fmt.layout_of(g) != layout:
        raise fmt.StoreError(f"refusing to resume {out}: layout {fmt.layout_of(g)} != {layout}")
    return g, False
