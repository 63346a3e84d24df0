"""Calibration metrics of answer-option probabilities, per layer of the logit lens (numpy only).

Inputs follow one convention: ``logits`` (..., n, K) answer-token logits, ``choice_mask`` (n, K)
bool with False = option absent (TruthfulQA has variable option counts), ``label`` (n,) int.
Leading ``...`` is typically the layer axis L. Every function raises ValueError on mismatched
shapes, empty input, labels outside 0..K-1 or on an absent option, and n_bins < 1.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analyze.calibration._binning import (
    MCE_MIN_COUNT,
    bin_sums,
    check_min_count,
    ece_equal_mass_nd,
    ece_from_sums,
    mce_from_sums,
)
from analyze.calibration._checks import as_label, as_mask, as_scores, check_n_bins
from analyze.calibration._probs import TERMS, brier_terms, nll_terms, per_example_terms


def brier(probs: ArrayLike, label: ArrayLike, choice_mask: ArrayLike | None = None) -> float:
    """Multi-class Brier score: mean over examples of sum_k (p_k - y_k)^2 over present options.

    probs: (n, K); label: (n,); choice_mask: (n, K) or None (all options present). Range [0, 2].
    """
    p = as_scores(probs, "probs")
    n, k = p.shape[-2:]
    mask = as_mask(choice_mask, n, k)
    lab = as_label(label, n, k, mask)
    return float(brier_terms(p, lab, mask).mean())


def nll(probs: ArrayLike, label: ArrayLike) -> float:
    """Mean negative log-likelihood (nats) of the label, -log p_label with p clipped at 1e-12."""
    p = as_scores(probs, "probs")
    lab = as_label(label, *p.shape[-2:])
    return float(nll_terms(p, lab).mean())


def chance_accuracy(choice_mask: ArrayLike) -> float:
    """Expected accuracy of a uniform guess: the mean over examples of 1 / K_i, K_i the number of
    options of example i (True entries of its row of ``choice_mask`` (n, K)).

    Not 1 / mean(K): with varying option counts the two differ (TruthfulQA MC1, 2 to 13
    options: 0.226 against 0.199), and only the mean of 1 / K_i is the accuracy of guessing.
    """
    mask = np.asarray(choice_mask, bool)
    if mask.ndim != 2 or mask.shape[0] == 0:
        raise ValueError(f"choice_mask must have shape (n, K) with n >= 1, got {mask.shape}")
    k = mask.sum(axis=1)
    if (k < 1).any():
        raise ValueError(f"{int((k < 1).sum())} examples have no option in choice_mask")
    return float((1.0 / k).mean())


def best_constant_chance(label: ArrayLike, choice_mask: ArrayLike | None = None) -> float:
    """Accuracy of the best constant answer: max over letters k of the share of examples whose
    label is k (answering k where option k is absent counts as wrong). label: (n,) option
    indices; choice_mask: (n, K) or None (K = the largest label + 1).

    Labels are not balanced, so always answering the most frequent letter beats a uniform guess
    (MMLU's sample here: 0.262 against chance 0.25); an accuracy above chance_accuracy but not
    above this is within reach of a model that only learned the letter frequencies.
    """
    lab = np.asarray(label)
    if lab.ndim != 1 or lab.size == 0:
        raise ValueError(f"label must have shape (n,) with n >= 1, got {lab.shape}")
    if choice_mask is None:
        if not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0:
            raise ValueError("label must hold option indices 0..K-1")
        k = int(lab.max()) + 1
    else:
        given = np.asarray(choice_mask)
        k = int(given.shape[-1])
        lab = as_label(lab, lab.size, k, as_mask(given, lab.size, k))
    return float(np.bincount(lab, minlength=k).max() / lab.size)


def flip_rate(pred_a: ArrayLike, pred_b: ArrayLike) -> float:
    """Fraction of examples whose predictions differ; pred_a, pred_b: (n,) option indices."""
    a, b = np.asarray(pred_a), np.asarray(pred_b)
    if a.shape != b.shape:
        raise ValueError(f"pred_a and pred_b must have one shape; got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("flip_rate of empty predictions is undefined")
    return float(np.mean(a != b))


def per_layer_metrics(
    logits_lk: ArrayLike,
    label: ArrayLike,
    choice_mask: ArrayLike | None = None,
    n_bins: int = 10,
    mce_min_count: int = MCE_MIN_COUNT,
) -> dict[str, NDArray[np.float64]]:
    """Every metric for every layer at once.

    logits_lk: (L, n, K); label: (n,); choice_mask: (n, K). Returns a dict of (L,) float64 arrays:
    accuracy, ece, mce, ece_equal_mass, brier, nll, mean_confidence, entropy (mean over examples),
    kl_to_last (mean KL(p_last || p_layer), the logit-lens convention: how far the layer is from
    the model's final answer distribution), flip_rate (argmax differs from the last layer's).
    """
    z = as_scores(logits_lk, "logits_lk")
    if z.ndim != 3:
        raise ValueError(f"logits_lk must have shape (L, n, K), got {z.shape}")
    _, n, k = z.shape
    mask = as_mask(choice_mask, n, k)
    lab = as_label(label, n, k, mask)
    m = check_n_bins(n_bins)
    min_count = check_min_count(mce_min_count)

    return metrics_from_terms(per_example_terms(z, lab, mask), m, min_count)


def metrics_from_terms(
    terms: NDArray[np.float64], n_bins: int = 10, mce_min_count: int = MCE_MIN_COUNT
) -> dict[str, NDArray[np.float64]]:
    """``per_layer_metrics`` from ``per_example_terms`` (len(TERMS), L, n) of the n examples
    (``analyze_store`` computes the terms chunk by chunk while it reads resid)."""
    correct, conf = terms[0], terms[1]
    means = dict(zip(TERMS, terms.mean(axis=-1)))
    sums = bin_sums(conf, correct, n_bins)
    return {
        "accuracy": means["correct"],
        "ece": ece_from_sums(*sums),
        "mce": mce_from_sums(*sums, mce_min_count),
        "ece_equal_mass": ece_equal_mass_nd(conf, correct, n_bins),
        "brier": means["brier"],
        "nll": means["nll"],
        "mean_confidence": means["conf"],
        "entropy": means["entropy"],
        "kl_to_last": means["kl_to_last"],
        "flip_rate": means["flip"],
    }
