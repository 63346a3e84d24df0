"""``layercal``: one command over both stages; ``steer --online`` is wired here, so the analysis
stage gets the model-backed sweeper without importing the extraction stage."""

from __future__ import annotations

import argparse

from analyze.cli import add_subcommands
from analyze.cli import main as analyze_main
from layercal import cli


def test_the_layercal_command_hands_steer_the_online_sweeper():
    p = argparse.ArgumentParser(prog="layercal")
    sub = p.add_subparsers(dest="command", required=True)
    add_subcommands(sub, online_sweeper=cli.online_sweeper)
    args = p.parse_args(["steer", "S.zarr", "--direction", "D", "--out", "O", "--online"])
    assert args.online_sweeper is cli.online_sweeper
    plain = argparse.ArgumentParser(prog="layercal")
    add_subcommands(plain.add_subparsers(dest="command", required=True))
    assert plain.parse_args(["steer", "S", "--direction", "D", "--out", "O"]).online_sweeper is None


def test_online_steering_without_the_layercal_command_says_which_to_run(tmp_path, capsys):
    from tests.analyze.interventions.planted import planted_store

    store = planted_store(tmp_path / "s.zarr")
    d = tmp_path / "dir"
    assert analyze_main(["direction", "fit", str(store), "-o", str(d), "--n-boot", "2"]) == 0
    argv = ["steer", str(store), "--direction", str(d), "--out", str(tmp_path / "o")]
    assert analyze_main([*argv, "--online", "--model", "smollm2-135m"]) == 1
    assert "`layercal steer ... --online`" in capsys.readouterr().err


def test_the_subcommands_in_their_order():
    p = argparse.ArgumentParser(prog="layercal")
    sub = p.add_subparsers(dest="command", required=True)
    add_subcommands(sub)
    assert list(sub.choices) == ["summary", "store", "analyze", "nullspace", "direction", "steer"]
