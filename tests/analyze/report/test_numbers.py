"""analyze/report/numbers.py: the one convention every report and table prints numbers in."""

from __future__ import annotations

import numpy as np

from analyze.report.numbers import MINUS, MISSING, ci, interval, missing, num, pct, span, with_ci


def test_missing_values_are_one_em_dash():
    assert MISSING == "\u2014"
    for x in (None, float("nan"), float("inf"), np.float64("nan")):
        assert missing(x)
        assert num(x) == MISSING and num(x, 3, signed=True) == MISSING and pct(x) == MISSING
    assert not missing(0.0) and not missing(0) and not missing("text")


def test_numbers_use_the_true_minus_sign():
    assert MINUS == "\u2212"
    assert num(-0.25) == "\u22120.25"
    assert num(-0.0123) == "\u22120.012"  # 3 decimals below 0.1
    assert num(0.5) == "0.50" and num(0.05) == "0.050"
    assert num(0.5, 3) == "0.500" and num(-2, 3) == "\u22122"  # ints as they are
    assert "-" not in num(-1.5, 4) + pct(-0.1) + interval(-0.1, -0.2, -0.05)


def test_signed_values_carry_a_plus():
    assert num(0.0213, 3, signed=True) == "+0.021"
    assert num(-0.0213, 3, signed=True) == "\u22120.021"
    assert num(3, signed=True) == "+3"
    assert num(-1.25, spec="g") == "\u22121.25" and num(0.000123456, spec=".3g") == "0.000123"


def test_percentages():
    assert pct(0.265) == "26.5%" and pct(0.25, trim=True) == "25%" and pct(0.25) == "25.0%"


def test_intervals_in_sentences_and_cells():
    assert ci(0.01, 0.05) == "95% CI [0.010, 0.050]"
    assert ci(None, 0.05) == "" and ci(0.01, float("nan")) == ""
    assert ci(0.2, 0.3, pct) == "95% CI [20.0%, 30.0%]"
    row = {"d_ece": -0.02, "d_ece_lo": -0.06, "d_ece_hi": 0.01}
    assert with_ci(row, "d_ece", signed=True) == "\u22120.020 [\u22120.060, +0.010]"
    assert with_ci(row, "d_ece") == "\u22120.020 [\u22120.060, 0.010]"
    assert with_ci({"x": 0.5}, "x") == "0.500"  # no interval: the value alone
    assert with_ci({"x": None, "x_lo": 0.1, "x_hi": 0.2}, "x") == MISSING
    assert with_ci(None, "x") == MISSING and with_ci({}, "x") == MISSING


def test_ranges_use_an_en_dash():
    assert span(3, 7) == "3\u20137"


def test_an_exponent_keeps_its_sign():
    assert num(1.234e-5, spec=".2e") == "1.23e-05"
    assert num(-1.234e-5, spec=".2e") == "\u22121.23e-05"
