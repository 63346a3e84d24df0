"""What one analysis of one store produces, and how it is saved.

:class:`AnalysisResult` is the hand-off between the computation (``analyze.analysis``) and the
presentation (``analyze.report.figures``, ``analyze.report.write``), and the unit that is cached next to a
report. Column names of the tables are part of the command's output contract (layers.csv,
by_group.csv, landmarks.json): extend them, never rename.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from analyze.calibration.endpoints import ENDPOINTS

# layers.csv: one row per layer. Each metric M in INTERVAL_METRICS also has M_lo and M_hi
# (bootstrap 95% percentile interval, seeded; see params["bootstrap"]).
LAYER_COLUMNS = (
    "layer",
    "n",
    "accuracy",
    "ece",
    "mce",
    "ece_equal_mass",
    "brier",
    "nll",
    "mean_confidence",
    "entropy",
    "option_mass",
    "vocab_entropy",
    "kl_to_last",
    "flip_rate",
    "temperature",
    "ece_temperature_scaled",
    "nll_temperature_scaled",
    # issue 17's endpoints (analyze.calibration.endpoints): beside ECE, its noise floor; smooth
    # ECE with its bootstrap interval; the signed gap; AUROC; the top-label Brier decomposition
    *ENDPOINTS,
)
INTERVAL_METRICS = ("accuracy", "ece", "mce", "brier", "nll", "mean_confidence")
# by_group.csv: one row per (group_by, group, layer)
GROUP_COLUMNS = (
    "group_by",
    "group",
    "layer",
    "n",
    "accuracy",
    "ece",
    "mce",
    "mean_confidence",
    "brier",
    "nll",
    *ENDPOINTS,
)


def metric_definitions(bins: int, mce_min_count: int) -> dict[str, str]:
    """What the per-layer columns mean, added to ``landmarks["definitions"]`` by the analysis
    (so landmarks.json and the report say it next to the numbers)."""
    return {
        "confidence": "probability of the chosen option under a softmax over the K answer-option "
        "tokens only (the full-vocabulary softmax renormalised over the options); "
        "mean_confidence averages it over the examples",
        "option_mass": "full-vocabulary probability of the answer-option tokens, summed; below "
        "0.01 the lens reads tokens the model does not predict",
        "ece": f"sum over {bins} equal-width confidence bins of |bin| / n * |accuracy - "
        "confidence| of the bin",
        "mce": f"largest |accuracy - confidence| over the {bins} bins holding at least "
        f"{mce_min_count} examples (mce_min_count; nan when no bin does)",
        **ENDPOINT_DEFINITIONS,
    }


# what issue 17's endpoints mean (analyze.calibration.endpoints; metric_definitions adds them)
ENDPOINT_DEFINITIONS = {
    "ece_floor": "the noise floor of ece: the mean ECE, same bins, of a perfectly calibrated "
    "predictor with these confidences (correct_i ~ Bernoulli(confidence_i)), over "
    "floor_simulations seeded draws; an ECE near its floor is as small as this sample can show",
    "smece": "smooth ECE (Blasiok & Nakkiran 2023; relplot 1.0.3's smECE): the residual "
    "confidence - correct smoothed over confidence by a Gaussian kernel reflected at 0 and 1, "
    "integrated in absolute value, at relplot's bandwidth (the fixed point sigma = smECE_sigma, "
    "as a multiple of 1/1024 by its bisection); no bins. smece_lo/smece_hi: percentile "
    "bootstrap 95% interval over the same resamples as the other intervals, the bandwidth "
    "re-selected in each",
    "gap": "mean confidence - accuracy (signed: > 0 overconfident); ece >= |gap|, and an ECE "
    "that falls only as |gap| does is a shift of every confidence",
    "auroc": "probability that a correct example's confidence exceeds a wrong one's (ties 1/2): "
    "how well confidence tells right from wrong; a rescaling of the confidences cannot change "
    "it, a correction can",
    "brier_reliability": "Murphy decomposition of the top-label Brier score mean (confidence - "
    "correct)^2 (not the multi-class brier column) over the ece bins: reliability = sum_b "
    "n_b/n (confidence_b - accuracy_b)^2; brier_top = reliability - resolution + accuracy (1 - "
    "accuracy) + a within-bin term (exact identity, analyze.calibration.discrimination)",
    "brier_resolution": "resolution = sum_b n_b/n (accuracy_b - accuracy)^2: how far the ece "
    "bins' accuracies spread; a pure rescaling lowers reliability and leaves resolution, a "
    "correction that tells right from wrong raises it",
}


@dataclass
class AnalysisResult:
    """Per-layer analysis of one store.

    ``layers``: polars DataFrame with LAYER_COLUMNS (+ ``*_lo``/``*_hi`` interval columns).
    ``by_group``: polars DataFrame with GROUP_COLUMNS.
    ``landmarks``: JSON-able dict — ``chance_accuracy``, ``rise_layer``, ``plateau_layer``,
    ``peak_miscalibration_layer`` (chosen on the ``selection_split``'s selection half),
    ``correction_phase`` ({start, end, ece_start, ece_end, delta_ece, delta_ece_lo, delta_ece_hi,
    delta_confidence, delta_confidence_lo, delta_confidence_hi, significant, n_test, ...}, on
    its test half), each layer value an int or None (not reached), with the definitions used in
    ``definitions`` (see ``analyze.calibration.landmarks``).
    ``reliability``: dict of arrays, each (L, M) for M bins: ``count``, ``sum_conf``,
    ``sum_correct`` (equal-width bins on [0, 1]); ``conf_hist`` (L, 20) histogram of confidence.
    ``meta``: store url, ``store_hash``, model, dataset, split, template name, n_examples,
    n_layers, and ``params`` (bins, bootstrap, seed, split used for temperature fitting...).
    ``examples``: per analysed example (n of them, in store order): ``example`` (n,) its index
    in the store, ``answer_logits`` (n, L, K) float32 the lens on the answer tokens,
    ``option_mass`` (n, L) float32; kept in the cache (``examples.npz``), not in a report
    folder; empty for a result loaded from elsewhere.
    """

    layers: pl.DataFrame
    by_group: pl.DataFrame
    landmarks: dict[str, Any]
    reliability: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)
    examples: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Short name for legends: the model and dataset."""
        return str(self.meta.get("label") or self.meta.get("model") or "store")

    def save(self, folder: str | Path, *, examples: bool = False) -> None:
        """Write layers.csv, by_group.csv, landmarks.json, reliability.npz and meta.json (and
        examples.npz when ``examples`` and the result has them: the analysis cache)."""
        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        h = pl.lit(str(self.meta.get("store_hash")))
        self.layers.with_columns(store_hash=h).write_csv(d / "layers.csv")
        self.by_group.with_columns(store_hash=h).write_csv(d / "by_group.csv")
        (d / "landmarks.json").write_text(
            json.dumps({"store_hash": self.meta.get("store_hash"), **self.landmarks}, indent=2)
        )
        np.savez(d / "reliability.npz", **self.reliability)  # type: ignore[arg-type]
        (d / "meta.json").write_text(json.dumps(self.meta, indent=2, default=str))
        if examples and self.examples:
            np.savez(d / "examples.npz", **self.examples)  # type: ignore[arg-type]

    @classmethod
    def load(cls, folder: str | Path) -> AnalysisResult:
        d = Path(folder)
        landmarks = json.loads((d / "landmarks.json").read_text())
        landmarks.pop("store_hash", None)
        with np.load(d / "reliability.npz", allow_pickle=False) as z:
            rel = {k: z[k] for k in z.files}
        examples: dict[str, np.ndarray] = {}
        if (d / "examples.npz").is_file():
            with np.load(d / "examples.npz", allow_pickle=False) as z:
                examples = {k: z[k] for k in z.files}
        return cls(
            layers=pl.read_csv(d / "layers.csv").drop("store_hash", strict=False),
            by_group=pl.read_csv(d / "by_group.csv").drop("store_hash", strict=False),
            landmarks=landmarks,
            reliability=rel,
            meta=json.loads((d / "meta.json").read_text()),
            examples=examples,
        )
