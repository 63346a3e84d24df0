"""Forward batches: batch size and token budget (extract/forward/batching.py), and their effect on a store."""

from __future__ import annotations

import pytest

from extract.forward.batching import default_max_tokens, plan_batches

LENGTHS = [40, 650, 90, 91, 300, 40, 41, 120, 500, 60, 89, 45]


@pytest.mark.parametrize(
    "bs, budget", [(1, None), (4, None), (16, None), (16, 600), (4, 1000), (16, 1)]
)
def test_plan_covers_every_prompt_once_within_limits(bs, budget):
    plan = plan_batches(LENGTHS, bs, budget)
    flat = [i for b in plan for i in b]
    assert sorted(flat) == list(range(len(LENGTHS)))
    # longest first, ties by position: the order does not depend on the cuts
    assert flat == sorted(range(len(LENGTHS)), key=lambda i: (-LENGTHS[i], i))
    for b in plan:
        assert 1 <= len(b) <= bs
        padded = len(b) * max(LENGTHS[i] for i in b)
        assert budget is None or padded <= budget or len(b) == 1
    if budget is None:  # fixed batches: all full but the last
        assert [len(b) for b in plan[:-1]] == [bs] * (len(plan) - 1)


def test_budget_cuts_padding_and_is_greedy():
    fixed = plan_batches(LENGTHS, 16)
    capped = plan_batches(LENGTHS, 16, 600)
    padded = [sum(len(b) * max(LENGTHS[i] for i in b) for b in p) for p in (fixed, capped)]
    # sorted: 650 | 500 | 300 120 | 91 90 89 60 45 41 | 40 40 (2 x 300 fits 600; 7 x 91 does not)
    assert padded == [12 * 650, 650 + 500 + 2 * 300 + 6 * 91 + 2 * 40]
    assert [len(b) for b in capped] == [1, 1, 2, 6, 2]
    assert default_max_tokens("cpu") == 1024 and default_max_tokens("cuda") is None


def test_plan_rejects_bad_sizes():
    with pytest.raises(ValueError, match="batch_size"):
        plan_batches(LENGTHS, 0)
    with pytest.raises(ValueError, match="max_tokens"):
        plan_batches(LENGTHS, 4, 0)
