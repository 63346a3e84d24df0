"""The extraction config defined once: its fields generate ``layercal extract``'s options, the
parsed options give the config back, and a run records its settings from it."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from extract.config import ExtractConfig, add_arguments, config_from_args, run_settings
from layercal.format import DEFAULT_BLOCK


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="layercal extract")
    add_arguments(p)
    return p.parse_args(list(argv))


REQUIRED = ("--model", "m", "--dataset", "mmlu", "--out", "o.zarr")


def test_every_field_is_an_option_and_the_defaults_are_the_config_s():
    p = argparse.ArgumentParser()
    add_arguments(p)
    flags = {a.option_strings[0] for a in p._actions if a.option_strings} - {"-h"}
    assert len(flags) == len(dataclasses.fields(ExtractConfig))
    cfg = config_from_args(parse(*REQUIRED))
    assert cfg == ExtractConfig(model="m", dataset="mmlu", out="o.zarr")
    assert (cfg.shard, cfg.block, cfg.progress, cfg.max_batch_tokens) == (
        (0, 1),
        DEFAULT_BLOCK,
        True,
        "auto",
    )


def test_options_map_to_fields():
    args = parse(
        *REQUIRED,
        *("--subjects", "a, b", "--shard", "1/4", "--block-size", "128", "--no-progress"),
        *("--batch-size", "auto", "--max-batch-tokens", "0", "--trust-remote-code"),
    )
    cfg = config_from_args(args)
    assert cfg.subjects == ["a", "b"] and cfg.shard == (1, 4) and cfg.block == 128
    assert not cfg.progress and cfg.batch_size == "auto" and cfg.max_batch_tokens is None
    assert cfg.trust_remote_code
    assert run_settings(cfg) == {
        "dtype": "auto",
        "batch_size": "auto",
        "max_batch_tokens": None,
        "shard": "1/4",
        "padding_side": "left",
        "prefix_reuse": True,
    }
    off = config_from_args(parse(*REQUIRED, "--no-prefix-reuse"))
    assert not off.prefix_reuse and run_settings(off)["prefix_reuse"] is False


def test_the_config_is_frozen_and_keyword_only():
    cfg = ExtractConfig(model="m", dataset="mmlu", out="o.zarr")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        ExtractConfig("m", "mmlu", "o.zarr")  # type: ignore[misc]


@pytest.mark.parametrize(
    "argv, message",
    [
        (("--subjects", "a", "--category", "stem"), "not allowed with argument"),
        (("--batch-size", "0"), "must be at least 1"),
        (("--max-batch-tokens", "-3"), "must be >= 0"),
    ],
)
def test_bad_options_are_argparse_errors(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse(*REQUIRED, *argv)
    assert message in capsys.readouterr().err


def test_a_bad_shard_is_a_value_error_naming_the_option():
    with pytest.raises(ValueError, match="--shard '3/2': need 0 <= i < n"):
        config_from_args(parse(*REQUIRED, "--shard", "3/2"))
