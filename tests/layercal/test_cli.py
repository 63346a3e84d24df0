"""``layercal``: one command over both stages. Each package registers its own commands, and
``steer --online`` is handed the extraction stage's sweeper here, so the analysis stage runs
the model without importing the extraction stage."""

from __future__ import annotations

import argparse

import pytest

import analyze
import extract
from analyze.cli import add_subcommands
from analyze.cli import main as analyze_main
from layercal import cli
from layercal.store import cli as store_cli


def test_the_layercal_command_hands_steer_the_online_sweeper():
    p = argparse.ArgumentParser(prog="layercal")
    sub = p.add_subparsers(dest="command", required=True)
    for name in cli.ORDER:
        cli.registry()[name](sub, name)
    args = p.parse_args(["steer", "S.zarr", "--direction", "D", "--out", "O", "--online"])
    assert args.online_sweeper is cli.model_sweeper
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


def test_the_subcommands_in_their_order(capsys):
    p = argparse.ArgumentParser(prog="layercal")
    sub = p.add_subparsers(dest="command", required=True)
    add_subcommands(sub)
    assert list(sub.choices) == list(analyze.COMMANDS)
    assert list(analyze.COMMANDS) == [
        "summary", "analyze", "nullspace", "direction", "steer", "explore", "neurons", "lens"
    ]  # fmt: skip
    # every package's commands are in the order, each once, and `layercal --help` shows them so
    owners = [extract.COMMANDS, store_cli.COMMANDS, analyze.COMMANDS]
    assert sorted(cli.ORDER) == sorted(c for cs in owners for c in cs)
    assert sorted(cli.registry()) == sorted(cli.ORDER)
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "{extract,summary,store,analyze,nullspace,direction,steer,explore,neurons,lens}" in out


@pytest.mark.parametrize(
    "add", [extract.add_subcommand, analyze.add_subcommand, store_cli.add_subcommand]
)
def test_a_package_refuses_a_command_it_does_not_own(add):
    sub = argparse.ArgumentParser().add_subparsers()
    with pytest.raises(ValueError, match="has no command 'nope'"):
        add(sub, "nope")
