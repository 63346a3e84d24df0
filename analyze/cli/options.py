"""Options the analysis commands share: where dask runs (``--scheduler`` and its local-cluster
settings) and ``--storage-options``. argparse only; the scheduler itself is
:mod:`analyze.lens.scheduler`."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from typing import Any

from analyze.lens.scheduler import DEFAULT_MAX_WORKERS, scheduler_spec
from layercal.cliargs import add_storage_options, positive_int


def defaults_of(func: Callable[..., Any]) -> dict[str, Any]:
    """The keyword defaults of ``func``'s signature: a command's option defaults come from the
    library function it calls, so each default is written once."""
    return {
        name: p.default
        for name, p in inspect.signature(func).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def add_resample_args(p: argparse.ArgumentParser) -> None:
    """``--n-boot``, ``--seed`` and ``--mce-min-count`` of the commands that run
    ``analyze_store`` (``analyze``, ``explore``), with its defaults."""
    from analyze.analysis import analyze_store

    fn = defaults_of(analyze_store)
    p.add_argument(
        "--n-boot",
        type=int,
        default=fn["n_boot"],
        metavar="N",
        help="bootstrap resamples (default %(default)s)",
    )
    p.add_argument(
        "--seed", type=int, default=fn["seed"], help="seed of bootstrap, splits and samples"
    )
    p.add_argument(
        "--mce-min-count",
        type=int,
        default=fn["mce_min_count"],
        metavar="N",
        help="MCE ignores bins of fewer examples (default %(default)s: with 1, one example "
        "alone can set MCE)",
    )


def scheduler_arg(text: str) -> str:
    """argparse type of ``--scheduler``: a name or a distributed scheduler address."""
    try:
        return scheduler_spec(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


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
        type=scheduler_arg,
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
