"""analyze/report/plot.py: figure titles wrap to the figure's width instead of being cut."""

from __future__ import annotations

import pytest

from analyze.report import plot as P

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
