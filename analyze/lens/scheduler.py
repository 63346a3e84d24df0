"""Where the analysis's dask graphs run: ``--scheduler auto|threads|processes|ADDRESS``.

- ``threads``: dask's threaded scheduler in this process. The heavy steps are numpy products
  that release the GIL, so threads use every core with no data moved between processes.
- ``processes``: a ``distributed.LocalCluster`` of worker processes on this machine, each with a
  memory limit (``--workers``, ``--threads-per-worker``, ``--memory-limit``); started here and
  shut down when the command ends.
- ADDRESS (``tcp://host:8786``): ``distributed.Client(ADDRESS)`` on a running cluster; this
  command disconnects at the end and leaves the cluster running. Workers must be able to read
  the store: a URL, or a path on a filesystem they share, written absolute.
- ``auto``: a distributed Client already active in this process (the Python API), else the
  scheduler address in dask's configuration (``DASK_SCHEDULER_ADDRESS``), else ``threads``. It
  never starts a cluster by itself: for one machine, threads are as fast and start instantly.

``distributed`` is imported only when it is used. The graphs hold only picklable things (numpy
arrays, dataclasses, module-level functions, zarr arrays of local or fsspec stores), so every
scheduler gives the same numbers. Stores in ``memory://`` live in this process only: use them
with ``threads``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from importlib.util import find_spec
from typing import Any

import dask

SCHEDULERS = ("auto", "threads", "processes")
DEFAULT_MAX_WORKERS = 4  # processes: worker processes when ``workers`` is not given
_ADDRESS = re.compile(r"[a-z][a-z0-9+.-]*://\S+|[\w.-]+:\d+")


def scheduler_spec(text: str) -> str:
    """``text`` if it names a scheduler (:data:`SCHEDULERS`) or a distributed scheduler address,
    else a ValueError that says what is expected."""
    if text in SCHEDULERS or _ADDRESS.fullmatch(text):
        return text
    raise ValueError(
        f"{text!r}: expected auto, threads, processes or a scheduler address such as "
        "tcp://host:8786"
    )


def _say(text: str) -> None:
    print(f"dask: {text}", file=sys.stderr, flush=True)


def _active_client() -> Any:
    """The default distributed Client of this process, or None (without importing distributed)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


def _dashboard(client: Any) -> str:
    link = str(client.dashboard_link)
    return link if find_spec("bokeh") else f"{link} (install bokeh to view it)"


@contextmanager
def dask_scheduler(
    spec: str = "auto",
    *,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | None = None,
    say: Callable[[str], None] = _say,
) -> Iterator[str]:
    """Run the dask computations inside the block on ``spec``; yields what was chosen.

    ``processes`` starts a LocalCluster and closes it on exit; an address connects a Client and
    disconnects on exit. ``say`` gets one line with the cluster and its dashboard.
    """
    spec = scheduler_spec(spec)
    local = (workers, threads_per_worker, memory_limit)
    if spec != "processes" and any(x is not None for x in local):
        raise ValueError(
            "--workers, --threads-per-worker and --memory-limit apply to --scheduler processes"
        )
    with ExitStack() as stack:
        if spec == "auto":
            client, address = _active_client(), dask.config.get("scheduler-address", None)
            if client is not None:
                say(f"using the active distributed client, dashboard {_dashboard(client)}")
                yield "distributed (active client)"
                return
            if address:
                spec = str(address)
            else:
                spec = "threads"
        if spec == "threads":
            stack.enter_context(dask.config.set(scheduler="threads"))
            yield "threads"
            return
        from distributed import Client, LocalCluster

        if spec == "processes":
            cpus = os.cpu_count() or 1
            n = workers or min(DEFAULT_MAX_WORKERS, cpus)
            threads = threads_per_worker or max(1, cpus // n)
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=n,
                    threads_per_worker=threads,
                    processes=True,
                    memory_limit=memory_limit or "auto",
                    dashboard_address=":0",  # a free port: 8787 may be taken on shared machines
                )
            )
            client = stack.enter_context(Client(cluster))
            info: dict[str, Any] = client.scheduler_info()["workers"]
            each = max((w.get("memory_limit") or 0 for w in info.values()), default=0) / 2**20
            say(
                f"local cluster of {n} worker processes x {threads} threads, {each:.0f} MiB "
                f"each; dashboard {_dashboard(client)}"
            )
            yield f"processes ({n} x {threads})"
            return
        try:
            client = stack.enter_context(Client(spec))
        except OSError as e:
            raise ValueError(f"cannot reach the dask scheduler at {spec}: {e}") from e
        n = len(client.scheduler_info()["workers"])
        say(f"connected to {spec} ({n} workers); dashboard {_dashboard(client)}")
        yield spec


def scheduler_of(args: argparse.Namespace) -> AbstractContextManager[str]:
    """``dask_scheduler`` from parsed arguments (``analyze.cli.options.add_scheduler_args``)."""
    return dask_scheduler(
        getattr(args, "scheduler", "auto"),
        workers=getattr(args, "workers", None),
        threads_per_worker=getattr(args, "threads_per_worker", None),
        memory_limit=getattr(args, "memory_limit", None),
    )
