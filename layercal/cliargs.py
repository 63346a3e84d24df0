"""argparse types and options shared by the ``layercal`` subcommands of every package.

The store tools and the analysis commands import it, so none of them imports another
command's module for its options; options only one stage uses live in that stage (the
``--scheduler`` group: :mod:`analyze.cli.options`). Pure argparse: nothing here imports dask,
zarr or torch.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

SO_HELP = (
    "JSON object of fsspec options for a store given as a URL, e.g. '{\"anon\": true}' or "
    '\'{"key": "...", "secret": "..."}\''
)


def storage_options_arg(text: str) -> dict[str, Any]:
    """argparse type of ``--storage-options``: a JSON object (credentials, endpoint, ...)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e}): {text!r}") from e
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def add_storage_options(
    p: Any, flag: str = "--storage-options", help: str = SO_HELP, **kw: Any
) -> None:
    """Add ``flag`` (parsed to a dict, or None when absent) to parser or group ``p``."""
    p.add_argument(flag, type=storage_options_arg, metavar="JSON", help=help, **kw)


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def comma_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ["a", "b", "c"]."""
    return [s.strip() for s in text.split(",") if s.strip()]


def comma_floats(text: str) -> list[float]:
    """``"-1,0.5"`` -> [-1.0, 0.5]."""
    return [float(x) for x in text.split(",") if x.strip()]


def comma_ints(text: str) -> list[int]:
    """``"0,10,20"`` -> [0, 10, 20]."""
    return [int(x) for x in text.split(",") if x.strip()]
