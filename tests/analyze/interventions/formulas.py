"""Metrics written out from their definitions, for the steering tests to check against."""

from __future__ import annotations

import numpy as np


def softmax(z):
    """Row-wise softmax of logits (..., K)."""
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


def ece_formula(conf, correct, bins=10):
    """Equal-width ECE: sum over bins of |mean confidence - accuracy| weighted by the bin's
    share (the top bin closed at 1)."""
    conf, correct = np.asarray(conf, float), np.asarray(correct, float)
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    return sum(
        abs(conf[idx == b].mean() - correct[idx == b].mean()) * (idx == b).mean()
        for b in range(bins)
        if (idx == b).any()
    )


def metrics_formula(z, label, bins=10):
    """accuracy, ECE, Brier (sum over options), NLL of logits z (n, K) by the formulas."""
    p = softmax(np.asarray(z, float))
    n = label.size
    onehot = np.eye(p.shape[1])[label]
    conf, correct = p.max(axis=1), p.argmax(axis=1) == label
    return {
        "accuracy": correct.mean(),
        "ece": ece_formula(conf, correct, bins),
        "brier": ((p - onehot) ** 2).sum(axis=1).mean(),
        "nll": -np.log(p[np.arange(n), label]).mean(),
        "mean_confidence": conf.mean(),
    }
