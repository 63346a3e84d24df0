"""Commitment depth and confidence falls, on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.explore.questions import (
    FALL_MIN,
    commitment_depth,
    confidence_falls,
    option_probs,
    question_summary,
)


def test_commitment_is_where_the_final_answer_starts_to_hold():
    pred = np.array(
        [
            [0, 1, 2, 2, 2],  # holds C from depth 2
            [2, 2, 2, 2, 2],  # always C: depth 0
            [1, 1, 0, 1, 3],  # changes at the last depth: 4
            [3, 0, 3, 0, 0],  # B at 1, lost at 2, from 3 on: 3
        ]
    )
    assert commitment_depth(pred).tolist() == [2, 0, 4, 3]
    with pytest.raises(ValueError, match=r"\(n, L\)"):
        commitment_depth(np.zeros(3, int))


def test_confidence_falls_are_drops_of_at_least_fall_min_from_the_depth_before():
    conf = np.array([[0.3, 0.5, 0.44, 0.46, 0.40, 0.9, 0.3]])
    # 0.5 -> 0.44 is a drop of 0.06; 0.46 -> 0.40 of 0.06; 0.9 -> 0.3 of 0.6
    assert np.flatnonzero(confidence_falls(conf)[0]).tolist() == [2, 4, 6]
    assert FALL_MIN == 0.05
    assert not confidence_falls(conf, min_drop=0.7).any()


def test_option_probs_are_the_softmax_over_present_options_at_every_depth():
    logits = np.array([[[1.0, 2.0, 0.0, 9.0], [0.0, 0.0, 0.0, 9.0]]])  # (1, 2, 4)
    mask = np.array([[True, True, True, False]])
    p = option_probs(logits, mask)
    e = np.exp([1.0, 2.0, 0.0])
    np.testing.assert_allclose(p[0, 0], [*(e / e.sum()), 0.0])
    np.testing.assert_allclose(p[0, 1], [1 / 3, 1 / 3, 1 / 3, 0.0])
    s = question_summary(logits, mask)
    assert s["pred"].tolist() == [[1, 0]]  # a tie goes to the lowest option
    assert s["commitment"].tolist() == [1]
    assert s["falls"].tolist() == [[False, True]]  # 0.665 -> 0.333
