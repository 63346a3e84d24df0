"""analyze/report/plot.py: figure titles wrap to the figure's width instead of being cut."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.report import plot as P
from analyze.report.plot import use_relative, x_of

LONG = (
    "qwen2.5-coder-1.5b · mmlu/test high_school_geography,world_religions,"
    "high_school_government_and_politics (n=1200): reliability over depth"
)


def _right_edge(fig) -> float:
    renderer = fig.canvas.get_renderer()
    return float(fig._suptitle.get_window_extent(renderer).x1)


@pytest.mark.parametrize("width", [3.0, 5.2, 9.8])
def test_a_long_title_stays_inside_the_figure(width):
    with P.style():
        fig = P.new_figure(width, 2.0)
        fig.subplots()
        P.title(fig, LONG)
        fig.canvas.draw()
        text = fig._suptitle.get_text()
        assert _right_edge(fig) <= fig.get_figwidth() * fig.dpi
        assert text.replace("\n", "").replace(" ", "") == LONG.replace(" ", "")  # nothing lost
        if width < 9.8:
            assert "\n" in text


def test_a_short_title_is_left_alone():
    with P.style():
        fig = P.new_figure(5.2, 2.0)
        P.title(fig, "smollm2-135m · mmlu/test (n=64)")
        assert fig._suptitle.get_text() == "smollm2-135m · mmlu/test (n=64)"


def test_relative_depth_when_layer_counts_differ(rising, flat):
    assert use_relative([rising, flat], None) and not use_relative([rising, rising], None)
    assert not use_relative([rising, flat], False)
    np.testing.assert_allclose(x_of(rising, [0, 19], True), [0.0, 1.0])


def test_long_store_labels_give_short_distinct_file_names():
    from analyze.report.plot import slug

    subjects = "-".join(f"subject_number_{i}" for i in range(57))  # a full-MMLU label, 1,000+ chars
    a, b = slug("smollm2 · mmlu " + subjects), slug("smollm2 · mmlu " + subjects + "x")
    assert len(a) <= 60 and len(b) <= 60 and a != b and a.startswith("smollm2-mmlu-subject")
    assert slug("synthetic-7b") == "synthetic-7b"
