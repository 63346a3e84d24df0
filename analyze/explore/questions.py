"""What the explorer's question view shows of one question, from the lens at every depth.

Shapes: n questions, L depths, K options. ``logits`` (n, L, K) are the answer-option lens logits
an analysis kept (``AnalysisResult.examples["answer_logits"]``); ``choice_mask`` (n, K).

- **Commitment depth**: the first depth from which the lens's answer (the argmax option, ties to
  the lowest index) is the answer it gives at the last depth, at every depth to the end. The
  last depth itself when the answer changes there.
- **Confidence falls**: depths where the confidence (the largest option probability) is lower
  than at the depth before by at least ``FALL_MIN`` (0.05): the question-level trace of a
  correction phase. Smaller wiggles are not listed.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from analyze.calibration import answer_probs

FALL_MIN = 0.05  # the smallest drop in confidence from one depth to the next that is listed


def option_probs(
    logits: NDArray[np.floating], choice_mask: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """Softmax over the present options at every depth: (n, L, K) -> (n, L, K), absent 0."""
    z = np.moveaxis(np.asarray(logits, np.float64), 1, 0)  # (L, n, K): the calibration layout
    return np.moveaxis(answer_probs(z, choice_mask), 0, 1)


def commitment_depth(pred: NDArray[np.integer]) -> NDArray[np.int64]:
    """Index of the commitment depth of each question: ``pred`` (n, L) argmax options -> (n,).

    The first index d with ``pred[:, d:] == pred[:, -1]`` throughout; L - 1 when only the last
    depth gives the final answer."""
    p = np.asarray(pred)
    if p.ndim != 2 or p.shape[1] == 0:
        raise ValueError(f"pred must have shape (n, L) with L >= 1, got {p.shape}")
    same = p == p[:, -1:]
    tail = np.cumprod(same[:, ::-1], axis=1).sum(axis=1)  # length of the final run
    return (p.shape[1] - tail).astype(np.int64)


def confidence_falls(conf: NDArray[np.floating], min_drop: float = FALL_MIN) -> NDArray[np.bool_]:
    """(n, L) confidence -> (n, L) bool: True at depth d >= 1 where conf[d] <= conf[d-1] -
    min_drop (False at depth 0, which has no depth before it)."""
    c = np.asarray(conf, np.float64)
    out = np.zeros(c.shape, bool)
    out[:, 1:] = c[:, :-1] - c[:, 1:] >= min_drop
    return out


def question_summary(
    logits: NDArray[np.floating], choice_mask: NDArray[np.bool_]
) -> dict[str, NDArray[np.generic]]:
    """Per question: ``pred`` (n, L) the lens's answer, ``conf`` (n, L), ``commitment`` (n,)
    depth index, ``falls`` (n, L) bool."""
    probs = option_probs(logits, choice_mask)
    pred = probs.argmax(axis=-1)
    conf = probs.max(axis=-1)
    return {
        "pred": pred,
        "conf": conf,
        "commitment": commitment_depth(pred),
        "falls": confidence_falls(conf),
    }
