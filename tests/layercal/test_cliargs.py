"""layercal/cliargs.py: the argparse types every package's commands share."""

from __future__ import annotations

import argparse

import pytest

from layercal.cliargs import (
    add_storage_options,
    comma_floats,
    comma_ints,
    comma_list,
    positive_int,
    storage_options_arg,
)


def test_storage_options_are_a_json_object_or_a_clear_error():
    assert storage_options_arg('{"anon": true, "key": "k"}') == {"anon": True, "key": "k"}
    with pytest.raises(argparse.ArgumentTypeError, match="not valid JSON"):
        storage_options_arg("{anon: true}")
    with pytest.raises(argparse.ArgumentTypeError, match="expected a JSON object"):
        storage_options_arg("[1, 2]")
    p = argparse.ArgumentParser()
    add_storage_options(p)
    assert p.parse_args([]).storage_options is None
    assert p.parse_args(["--storage-options", '{"a": 1}']).storage_options == {"a": 1}


def test_numbers_and_lists():
    assert positive_int("3") == 3
    for bad in ("0", "-1", "x", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="whole number >= 1"):
            positive_int(bad)
    assert comma_list("a, b,,c ") == ["a", "b", "c"]
    assert comma_floats("-1,0.5,") == [-1.0, 0.5]
    assert comma_ints("0,10, 20") == [0, 10, 20]
