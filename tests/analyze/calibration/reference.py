"""Loop-by-loop reference formulas and random inputs shared by the calibration tests."""

from __future__ import annotations

import math

import numpy as np


def ref_bin(c: float, m: int) -> int:
    """Bin of one confidence by a direct scan of [i/M, (i+1)/M), 1.0 in the last bin."""
    for i in range(m):
        if i / m <= c < (i + 1) / m or (i == m - 1 and c == 1.0):
            return i
    raise AssertionError(c)


def ref_bins(conf, correct, m):
    """Per-bin (count, mean conf, accuracy) by a loop over examples."""
    members: list[list[int]] = [[] for _ in range(m)]
    for j, c in enumerate(conf):
        members[ref_bin(float(c), m)].append(j)
    out = []
    for idx in members:
        if idx:
            out.append(
                (
                    len(idx),
                    sum(conf[j] for j in idx) / len(idx),
                    sum(correct[j] for j in idx) / len(idx),
                )
            )
        else:
            out.append((0, 0.0, 0.0))
    return out


def ref_ece(conf, correct, m):
    n = len(conf)
    return sum(cnt / n * abs(acc - cf) for cnt, cf, acc in ref_bins(conf, correct, m))


def ref_mce(conf, correct, m, min_count=1):
    gaps = [abs(acc - cf) for cnt, cf, acc in ref_bins(conf, correct, m) if cnt >= min_count]
    return max(gaps) if gaps else math.nan


def ref_ece_equal_mass(conf, correct, m):
    """Sort by (conf, correct); runs of sizes q+1 (first n mod M of them) or q."""
    n = len(conf)
    order = sorted(range(n), key=lambda j: (conf[j], correct[j]))
    q, r = divmod(n, m)
    total, start = 0.0, 0
    for b in range(m):
        size = q + 1 if b < r else q
        run = order[start : start + size]
        start += size
        if run:
            acc = sum(correct[j] for j in run) / size
            cf = sum(conf[j] for j in run) / size
            total += size / n * abs(acc - cf)
    return total


def random_conf(rng, n, m):
    """Confidences mixing uniform draws, exact bin edges i/M, values just below edges, 0 and 1."""
    edges = np.arange(m + 1) / m
    kind = rng.integers(0, 4, n)
    conf = rng.uniform(0, 1, n)
    conf = np.where(kind == 1, edges[rng.integers(0, m + 1, n)], conf)
    conf = np.where(kind == 2, np.nextafter(edges[rng.integers(1, m + 1, n)], 0.0), conf)
    conf = np.where(kind == 3, rng.choice([0.0, 1.0], n), conf)
    return conf


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def layer_data(seed, n_layers=4, n=150, k=4):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n_layers, n, k)) * np.linspace(0.5, 3, n_layers)[:, None, None]
    mask = rng.uniform(size=(n, k)) < 0.8
    label = rng.integers(0, k, n)
    mask[np.arange(n), label] = True
    logits[:, np.arange(n), label] += np.linspace(0, 2, n_layers)[:, None]
    return logits, label, mask
