"""argparse types and option groups shared by the ``layercal`` subcommands.

One module that every subcommand imports (the store tools, the analysis commands), so none of
them imports another command's module for its options. Pure argparse: nothing here imports
dask, zarr or torch at import time.
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

SO_HELP = (
    "JSON object of fsspec options for a store given as a URL, e.g. '{\"anon\": true}' or "
    '\'{"key": "...", "secret": "..."}\''
)
SCHEDULERS = ("auto", "threads", "processes")
_ADDRESS = re.compile(r"[a-z][a-z0-9+.-]*://\S+|[\w.-]+:\d+")
DEFAULT_MAX_WORKERS = 4  # --scheduler processes: worker processes when --workers is not given


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


def scheduler_spec(text: str) -> str:
    """argparse type of ``--scheduler``: a name or a distributed scheduler address."""
    if text in SCHEDULERS or _ADDRESS.fullmatch(text):
        return text
    raise argparse.ArgumentTypeError(
        f"{text!r}: expected auto, threads, processes or a scheduler address such as "
        "tcp://host:8786"
    )


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def byte_size(text: str) -> str:
    """argparse type: a size dask understands (``2GiB``, ``512MB``), kept as text."""
    import dask.utils  # only when the option is given

    try:
        dask.utils.parse_bytes(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a size such as 2GiB or 512MB, got {text!r}"
        ) from None
    return text


def add_scheduler_args(p: argparse.ArgumentParser) -> None:
    """Add ``--scheduler``, ``--workers``, ``--threads-per-worker`` and ``--memory-limit``."""
    g = p.add_argument_group("where dask runs (docs/scaling.md)")
    g.add_argument(
        "--scheduler",
        type=scheduler_spec,
        default="auto",
        metavar="auto|threads|processes|ADDRESS",
        help="threads in this process; processes: a local dask.distributed cluster; ADDRESS "
        "(tcp://host:8786): a running cluster; auto (default): an active distributed client or "
        "$DASK_SCHEDULER_ADDRESS, else threads",
    )
    g.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help=f"processes: worker processes (default min({DEFAULT_MAX_WORKERS}, CPUs))",
    )
    g.add_argument(
        "--threads-per-worker",
        type=positive_int,
        metavar="T",
        help="processes: threads in each worker (default CPUs / N, at least 1)",
    )
    g.add_argument(
        "--memory-limit",
        type=byte_size,
        metavar="SIZE",
        help="processes: memory limit of each worker, e.g. 2GiB (default: this machine's memory "
        "shared by the workers); a worker spills to disk, then pauses, before reaching it",
    )


def add_remote_args(p: argparse.ArgumentParser) -> None:
    """The options every analysis command shares: ``--storage-options`` and the scheduler."""
    add_storage_options(p)
    add_scheduler_args(p)


def comma_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ["a", "b", "c"]."""
    return [s.strip() for s in text.split(",") if s.strip()]


def comma_floats(text: str) -> list[float]:
    """``"-1,0.5"`` -> [-1.0, 0.5]."""
    return [float(x) for x in text.split(",") if x.strip()]


def comma_ints(text: str) -> list[int]:
    """``"0,10,20"`` -> [0, 10, 20]."""
    return [int(x) for x in text.split(",") if x.strip()]
