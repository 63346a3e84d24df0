"""Two stores of the same questions and the same model, compared on the same examples.

A few-shot store (finished or not) is compared with the zero-shot store it was sampled beside:
:func:`same_examples` takes the zero-shot store's rows of the few-shot store's example ids
(refusing a store of another model, by the unembedding's fingerprint, or ids the zero-shot
store lacks), :func:`compare_fewshot` analyses both alike (``analyze_store``) and measures the
zero-shot store's correction phase on both with :func:`window_deltas`, so the rise and the
correction phase are compared on one set of examples. ``scripts/findings.py`` writes the
result with :meth:`FewshotComparison.save`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from analyze.results import AnalysisResult

# the landmarks.json entries kept for each analysed store (in findings.json and summary.json)
LANDMARK_KEYS = (
    "chance_accuracy",
    "first_crossing_layer",
    "rise_layer",
    "plateau_layer",
    "peak_miscalibration_layer",
    "correction_phase",
)
FIXED_WINDOW_RULE = (
    "the zero-shot store's correction phase (its peak chosen on the selection half), measured "
    "on both stores on the same test-half examples, paired bootstrap"
)


class StoreMismatch(ValueError):
    """Two stores that cannot be compared example for example."""


def same_examples(
    reference: xr.Dataset, other: xr.Dataset, names: tuple[str, str] = ("", "")
) -> xr.Dataset:
    """``reference``'s rows of ``other``'s example ids, in ``other``'s order.

    Raises :class:`StoreMismatch` when the two were extracted from different models (their
    unembedding fingerprints differ) or when ``other`` holds an id ``reference`` lacks.
    ``names``: (reference, other) as the messages name them."""
    from analyze.interventions.svd import w_u_fingerprint

    ref_name, other_name = names
    if w_u_fingerprint(other) != w_u_fingerprint(reference):
        raise StoreMismatch(
            f"{other_name} was extracted from another model than {ref_name} (their W_U "
            "differ); compare a K-shot store with the zero-shot store of the same model"
        )
    ids = [str(e) for e in np.asarray(other["example_id"].values)]
    pos = {str(e): i for i, e in enumerate(np.asarray(reference["example_id"].values))}
    missing = [e for e in ids if e not in pos]
    if missing:
        raise StoreMismatch(f"{len(missing)} examples are not in {ref_name}, e.g. {missing[0]}")
    return reference.isel(example=[pos[e] for e in ids])


def window_deltas(
    ds: xr.Dataset, window: tuple[int, int], params: dict[str, Any]
) -> dict[str, Any]:
    """What the correction phase reports (``window_change``) for the depths of ``window``, on
    the test half of ``ds`` (the examples ``analyze_store`` with these ``params`` does not use to
    choose the peak), from the answer lens on the stored residuals, with the analysis' bins and
    bootstrap. On the zero-shot store this reproduces its own correction phase; on the few-shot
    store it measures the same depths, which the few-shot store did not choose."""
    from analyze.calibration import (
        answer_probs,
        confidence_and_correct,
        selection_half,
        window_change,
    )
    from analyze.lens import AnswerLens

    boot = params["bootstrap"]
    layers = [int(x) for x in ds["layer"].values]
    idx = [layers.index(d) for d in window]
    test = ~selection_half(ds["subject"].values, ds["example_id"].values, boot["seed"])
    h = np.asarray(ds["resid"].isel(layer=idx).values)[test]  # (n, 2, d)
    z = np.moveaxis(AnswerLens.of(ds).folded(h), 1, 0)  # (2, n, K)
    probs = answer_probs(z, np.asarray(ds["choice_mask"].values)[test])
    conf, correct = confidence_and_correct(probs, np.asarray(ds["label"].values)[test])
    y = correct.astype(np.float64)
    return {
        "n_test": int(test.sum()),
        "confidence_start": float(conf[0].mean()),
        "confidence_end": float(conf[1].mean()),
        "accuracy_start": float(y[0].mean()),
        "accuracy_end": float(y[1].mean()),
        **window_change(
            conf,
            y,
            0,
            1,
            n_bins=params["bins"],
            n_boot=boot["n_boot"],
            seed=boot["seed"],
            alpha=boot["alpha"],
        ),
    }


def last_layer_summary(result: AnalysisResult) -> dict[str, Any]:
    """Last-layer accuracy and ECE, the landmarks of :data:`LANDMARK_KEYS` and the notes."""
    last = result.layers.sort("layer").tail(1).row(0, named=True)
    return {
        "accuracy_last": last["accuracy"],
        "ece_last": last["ece"],
        "landmarks": {k: result.landmarks.get(k) for k in LANDMARK_KEYS},
        "notes": result.landmarks.get("notes", []),
    }


@dataclass
class FewshotComparison:
    """``results``: the analyses, keyed ``zero-shot`` and ``few-shot``; ``summary``: what
    ``summary.json`` holds (n, the stores, each side's :func:`last_layer_summary`, and
    ``fixed_window`` when the zero-shot store has a correction phase)."""

    results: dict[str, AnalysisResult]
    summary: dict[str, Any]

    def save(self, out: Path) -> None:
        """Each analysis in ``out/<name>``, a two-store ``report.md`` and ``summary.json``."""
        from analyze.report.write import write_report

        for name, r in self.results.items():
            r.save(out / name)
        write_report(list(self.results.values()), out, fmt="md", include_sections=False)
        (out / "summary.json").write_text(json.dumps(self.summary, indent=2, default=str) + "\n")


def compare_fewshot(
    zero: str, fewshot: str, *, n_boot: int, vocab_examples: int = 0
) -> FewshotComparison:
    """Analyse the K-shot store ``fewshot``'s written examples and the same examples of the
    zero-shot store ``zero`` alike (``n_boot`` resamples, ``vocab_examples`` recomputed), and
    measure the zero-shot store's correction phase on both (:func:`window_deltas`).

    Raises :class:`StoreMismatch` (before anything is analysed) for stores of different models
    or few-shot ids the zero-shot store lacks."""
    from analyze.analysis import analyze_store
    from analyze.lens.store import open_store

    few = open_store(fewshot, allow_partial=True)
    same = same_examples(open_store(zero), few, (zero, fewshot))
    results = {
        "zero-shot": analyze_store(same, n_boot=n_boot, vocab_examples=vocab_examples),
        "few-shot": analyze_store(few, n_boot=n_boot, vocab_examples=vocab_examples),
    }
    summary: dict[str, Any] = {
        "n": int(few.sizes["example"]),
        "stores": {"zero": zero, "few": fewshot},
    }
    for name, r in results.items():
        r.meta["label"] = f"{r.meta.get('model', '')} {name}".strip()
        summary[name] = last_layer_summary(r)
    phase = summary["zero-shot"]["landmarks"].get("correction_phase")
    if phase:  # the zero-shot store's correction phase, measured alike on both stores
        window = (int(phase["start"]), int(phase["end"]))
        params = results["zero-shot"].meta["params"]
        summary["fixed_window"] = {
            "window": list(window),
            "rule": FIXED_WINDOW_RULE,
            "zero-shot": window_deltas(same, window, params),
            "few-shot": window_deltas(few, window, params),
        }
    return FewshotComparison(results, summary)
