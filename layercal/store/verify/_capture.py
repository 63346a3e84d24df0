"""``store verify`` of a capture (``extract --capture mlp_last``): the output weights.

``mlp_last`` is an activation array, checked block by block with the others (its bytes are in
every block's sha256). ``w_out_last`` is written once at creation; its sha256 is recorded as
``attrs["capture"]["mlp_last"]["w_out_sha256"]`` and recomputed here, chunk row by chunk row.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import zarr

from layercal import format as fmt
from layercal.store.verify.report import Report


def check_captures(arrays: dict[str, zarr.Array], info: dict[str, Any], rep: Report) -> None:
    """The weights of every capture the store records match their recorded sha256."""
    raw = info.get("capture")
    capture: dict[str, Any] = raw if isinstance(raw, dict) else {}
    names = sorted(set(fmt.captures(arrays)) | {c for c in capture if c in fmt.CAPTURE_OF})
    for name in names:
        record = capture.get(name)
        if not isinstance(record, dict):
            rep.fail("zarr.json attrs", f"the store has {name} but attrs capture.{name} is missing")
            continue
        weights = fmt.CAPTURE_OF[name][1]
        a = arrays.get(weights)
        if a is None:
            continue  # reported by the layout check
        h = hashlib.sha256()
        step = a.chunks[0]
        try:
            for start in range(0, a.shape[0], step):
                h.update(np.asarray(a[start : start + step]).astype("<f4", copy=False).tobytes())
        except Exception as e:  # a damaged chunk: zarr/numcodecs raise assorted types
            rep.fail(weights, f"cannot be decoded: {type(e).__name__}: {str(e)[:160]}")
            continue
        want = record.get("w_out_sha256")
        if h.hexdigest() != want:
            rep.fail(
                weights,
                f"sha256 {h.hexdigest()[:16]}... != attrs capture.{name}.w_out_sha256 "
                f"{str(want)[:16]}...",
            )
        else:
            rep.notes.append(
                f"capture {name}: {record.get('neurons')} neurons of block "
                f"{record.get('block')}; {weights} sha256 matches"
            )
