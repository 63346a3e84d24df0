"""Every analysis command's option defaults are the library function's own (analyze/cli/
options.py:defaults_of): written once, in the signature, and read from there."""

from __future__ import annotations

import argparse

import pytest

from analyze.analysis import analyze_store
from analyze.cli import add_subcommand
from analyze.cli.options import defaults_of
from analyze.interventions import ESTIMATORS
from analyze.interventions.blocks import run_blocks
from analyze.interventions.direction import fit_direction
from analyze.interventions.neurons import run_neurons
from analyze.interventions.nullspace import run_nullspace
from analyze.interventions.steer import run_steering
from analyze.interventions.steer_select import SELECT


def parsed(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    for name in ("analyze", "explore", "nullspace", "direction", "steer", "neurons"):
        add_subcommand(sub, name)
    return p.parse_args(list(argv))


def test_defaults_of_reads_the_keyword_defaults():
    def f(a, b=1, *, c="x", d=None):  # noqa: ANN001, ANN202
        return a

    assert defaults_of(f) == {"b": 1, "c": "x", "d": None}


@pytest.mark.parametrize(
    ("argv", "func", "options"),
    [
        (
            ["analyze", "S", "--out", "R"],
            analyze_store,
            {
                "bins": "bins",
                "split": "split",
                "temperature_split": "temperature_split",
                "n_boot": "n_boot",
                "seed": "seed",
                "mce_min_count": "mce_min_count",
                "vocab_examples": "vocab_examples",
            },
        ),
        (
            ["explore", "S", "-o", "E"],
            analyze_store,
            {"bins": "bins", "n_boot": "n_boot", "seed": "seed", "mce_min_count": "mce_min_count"},
        ),
        (
            ["nullspace", "S", "--out", "O"],
            run_nullspace,
            {
                "random": "n_random",
                "bins": "n_bins",
                "n_boot": "n_boot",
                "vocab_examples": "vocab_examples",
            },
        ),
        (
            ["direction", "fit", "S", "-o", "D"],
            fit_direction,
            {
                "estimator": "estimator",
                "last_m": "last_m",
                "fit_fraction": "fit_fraction",
                "overconfident_quantile": "overconfident_quantile",
                "n_boot": "n_boot",
            },
        ),
        (
            ["steer", "S", "--direction", "D", "--out", "O"],
            run_steering,
            {
                "dev_fraction": "dev_fraction",
                "select": "select",
                "accuracy_margin": "accuracy_margin",
                "max_accuracy_drop": "max_accuracy_drop",
                "random": "n_random",
                "bins": "n_bins",
                "n_boot": "n_boot",
            },
        ),
        (
            ["neurons", "S", "--out", "O"],
            run_neurons,
            {
                "candidates": "n_candidates",
                "norm_quantile": "norm_quantile",
                "controls": "n_controls",
                "bins": "n_bins",
                "n_boot": "n_boot",
            },
        ),
    ],
)
def test_command_defaults_are_the_library_defaults(argv, func, options):
    args, fn = parsed(*argv), defaults_of(func)
    for option, param in options.items():
        assert getattr(args, option) == fn[param], option


def test_neurons_block_control_and_sets_follow_their_functions():
    args = parsed("neurons", "S", "--out", "O")
    assert args.random == defaults_of(run_blocks)["n_random"]
    assert tuple(args.top_n) == tuple(defaults_of(run_neurons)["top_n"])


def test_choices_are_the_literal_names():
    with pytest.raises(SystemExit):
        parsed("direction", "fit", "S", "-o", "D", "--estimator", "median")
    for est in ESTIMATORS:
        assert parsed("direction", "fit", "S", "-o", "D", "--estimator", est).estimator == est
    assert ESTIMATORS == ("mean", "pca", "per_layer", "contrast") and SELECT == ("nll", "ece")
    for sel in SELECT:
        assert parsed("steer", "S", "--direction", "D", "--out", "O", "--select", sel).select == sel
