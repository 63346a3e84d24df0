"""analyze/cli/options.py: ``--scheduler`` and its cluster settings, ``--storage-options``; the
names and defaults come from the library (analyze/lens/scheduler.py), written once."""

from __future__ import annotations

import argparse

import pytest

from analyze.cli.options import add_remote_args, byte_size, scheduler_arg
from analyze.lens.scheduler import DEFAULT_MAX_WORKERS, SCHEDULERS, scheduler_spec


def test_a_scheduler_is_a_name_or_an_address():
    for ok in (*SCHEDULERS, "tcp://10.0.0.1:8786", "node7:8786"):
        assert scheduler_spec(ok) == ok == scheduler_arg(ok)
    with pytest.raises(ValueError, match="expected auto, threads, processes or a scheduler"):
        scheduler_spec("thread")  # the library: a ValueError
    with pytest.raises(argparse.ArgumentTypeError, match="scheduler address such as"):
        scheduler_arg("thread")  # the option: argparse prints the message as it is


def test_the_remote_options_parse_and_show_the_library_default():
    p = argparse.ArgumentParser()
    add_remote_args(p)
    args = p.parse_args(["--scheduler", "processes", "--workers", "2", "--memory-limit", "2GiB"])
    assert (args.scheduler, args.workers, args.memory_limit) == ("processes", 2, "2GiB")
    assert p.parse_args([]).scheduler == "auto" and p.parse_args([]).storage_options is None
    assert f"default min({DEFAULT_MAX_WORKERS}, CPUs)" in p.format_help()
    assert byte_size("512MB") == "512MB"
    with pytest.raises(argparse.ArgumentTypeError, match="a size such as 2GiB"):
        byte_size("lots")
