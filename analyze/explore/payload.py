"""The data an explorer page holds: per store, the analysis' own numbers for the whole store and
the per-question arrays the page recomputes a filtered selection from.

Per store (:func:`store_payload`), JSON: the per-layer table (every numeric column of
``AnalysisResult.layers``, so a metric added there, such as smECE, shows up), the reliability
sums and confidence histogram per depth, the landmarks, the questions (ids, subjects,
categories, texts, options, labels); binary: the answer-option lens logits (n, L, K) float32 and
option mass (n, L) float32 the analysis computed, the choice mask, and the question view's
commitment depth and confidence falls (:mod:`analyze.explore.questions`).

:func:`pack` puts the JSON and the arrays in one gzip blob: ``uint32`` length of the JSON
(little-endian), the JSON, then each array at an offset that is a multiple of 8.
"""

from __future__ import annotations

import gzip
import json
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from analyze.calibration import bootstrap_ci
from analyze.explore.questions import FALL_MIN, question_summary
from analyze.explore.sources import Source

FORMAT_VERSION = 1
# the metrics panel and the curves over depth, in this order, where the analysis has the column
# (smECE under either name the endpoints work may give its column)
PANEL_METRICS = (
    "accuracy",
    "ece",
    "smece",
    "smooth_ece",
    "mce",
    "brier",
    "nll",
    "mean_confidence",
    "option_mass",
)
DEPTH_METRICS = ("accuracy", "ece", "smece", "smooth_ece", "mean_confidence", "nll", "option_mass")
# metrics the page recomputes for a filtered selection (explorer_metrics.js: metricsOf); others are
# shown for the whole store only
PAGE_METRICS = ("accuracy", "ece", "mce", "brier", "nll", "mean_confidence", "option_mass")
PAGE_BOOT = 200  # bootstrap resamples of the page's intervals for a filtered selection
HIST_BINS = 20  # the confidence histogram (analyze._compute.CONF_HIST_BINS)


def store_payload(src: Source) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    """(JSON-able dict, named arrays) of one source."""
    res = src.result
    params = res.meta.get("params", {})
    boot = params.get("bootstrap", {})
    logits = np.asarray(res.examples["answer_logits"], np.float32)
    mass = np.asarray(res.examples["option_mass"], np.float32)
    summary = question_summary(logits, src.mask)
    metrics = _layer_columns(res.layers)
    if "option_mass_lo" not in metrics:  # the analysis gives no interval: same resamples
        _, lo, hi = bootstrap_ci(
            lambda m: m.mean(axis=0),
            mass.astype(np.float64),
            n_boot=int(boot.get("n_boot", 1000)),
            seed=int(boot.get("seed", 0)),
        )
        metrics["option_mass_lo"], metrics["option_mass_hi"] = _finite(lo), _finite(hi)
    subjects = sorted(set(src.questions["subject"].to_list()))
    categories = sorted(set(src.questions["category"].to_list()))
    q = src.questions
    doc = {
        "name": src.name,
        "store": src.store,
        "hash": res.meta.get("store_hash"),
        "model": res.meta.get("model"),
        "dataset": res.meta.get("dataset"),
        "n": int(logits.shape[0]),
        "layers": [int(x) for x in res.layers["layer"].to_list()],
        "letters": src.letters,
        "bins": int(params.get("bins", 10)),
        "mce_min_count": int(params.get("mce_min_count", 10)),
        "n_boot": int(boot.get("n_boot", 1000)),
        "seed": int(boot.get("seed", 0)),
        "metrics": metrics,
        "panel": [m for m in PANEL_METRICS if m in metrics],
        "depth_metrics": [m for m in DEPTH_METRICS if m in metrics],
        "reliability": {k: np.asarray(res.reliability[k]).tolist() for k in _REL},
        "conf_hist": np.asarray(res.reliability["conf_hist"]).tolist(),
        "landmarks": _clean({k: v for k, v in res.landmarks.items() if k != "definitions"}),
        "subjects": subjects,
        "categories": categories,
        "questions": {
            "id": q["example_id"].to_list(),
            "subject": [subjects.index(s) for s in q["subject"].to_list()],
            "category": [categories.index(c) for c in q["category"].to_list()],
            "text": q["question"].to_list(),
            "choices": [
                [c for c, m in zip(row, mk) if m] for row, mk in zip(src.choices, src.mask)
            ],
        },
    }
    arrays: dict[str, NDArray[Any]] = {
        "logits": np.where(src.mask[:, None, :], logits, 0.0).astype(np.float32),
        "mass": mass,
        "mask": src.mask.astype(np.uint8),
        "label": q["label"].to_numpy().astype(np.int32),
        "commitment": summary["commitment"].astype(np.int32),
        "falls": summary["falls"].astype(np.uint8),
    }
    return doc, arrays


_REL = ("count", "sum_conf", "sum_correct")


def page_payload(sources: list[Source]) -> tuple[dict[str, Any], list[dict[str, NDArray[Any]]]]:
    """The page's JSON (every store, and the constants the page's code uses) and each store's
    arrays."""
    docs, arrays = zip(*(store_payload(s) for s in sources))
    doc = {
        "version": FORMAT_VERSION,
        "page_metrics": list(PAGE_METRICS),
        "page_boot": PAGE_BOOT,
        "hist_bins": HIST_BINS,
        "fall_min": FALL_MIN,
        "stores": list(docs),
    }
    return doc, list(arrays)


def pack(doc: dict[str, Any], arrays: list[dict[str, NDArray[Any]]]) -> bytes:
    """One gzip blob: the JSON (with an ``arrays`` list naming each array's store, name, dtype,
    shape and byte offset) followed by the arrays, little-endian, 8-byte aligned."""
    refs, parts, offset = [], [], 0
    for i, named in enumerate(arrays):
        for name, arr in named.items():
            a = np.ascontiguousarray(arr)
            dt = a.dtype.newbyteorder("<")
            refs.append(
                {
                    "store": i,
                    "name": name,
                    "dtype": dt.kind + str(dt.itemsize),
                    "shape": list(a.shape),
                    "offset": offset,
                }
            )
            raw = a.astype(dt, copy=False).tobytes()
            parts.append(raw + b"\0" * (-len(raw) % 8))
            offset += len(parts[-1])
    text = json.dumps({**doc, "arrays": refs}, allow_nan=False).encode()
    text += b" " * (-(len(text) + 4) % 8)  # the arrays start 8-byte aligned
    head = np.uint32(len(text)).astype("<u4").tobytes()
    return gzip.compress(head + text + b"".join(parts), compresslevel=6, mtime=0)


def unpack(blob: bytes) -> tuple[dict[str, Any], list[dict[str, NDArray[Any]]]]:
    """The inverse of :func:`pack` (what the page's code does, for tests and notebooks)."""
    raw = gzip.decompress(blob)
    n = int(np.frombuffer(raw[:4], "<u4")[0])
    doc = json.loads(raw[4 : 4 + n])
    base = 4 + n
    arrays: list[dict[str, NDArray[Any]]] = [{} for _ in doc["stores"]]
    for ref in doc.pop("arrays"):
        dt = np.dtype("<" + ref["dtype"][0] + ref["dtype"][1:])
        count = int(np.prod(ref["shape"], dtype=np.int64))
        start = base + ref["offset"]
        a = np.frombuffer(raw, dt, count, start).reshape(ref["shape"])
        arrays[ref["store"]][ref["name"]] = a
    return doc, arrays


def _layer_columns(layers: Any) -> dict[str, list[float | None]]:
    """Every numeric column of the per-layer table but ``layer`` and ``n``, nan as None."""
    out: dict[str, list[float | None]] = {}
    for name in layers.columns:
        if name in ("layer", "n") or not layers[name].dtype.is_numeric():
            continue
        out[name] = _finite(layers[name].to_numpy())
    return out


def _finite(values: Any) -> list[float | None]:
    return [float(v) if math.isfinite(float(v)) else None for v in np.asarray(values, np.float64)]


def _clean(value: Any) -> Any:
    """JSON-able copy: nan and inf become None, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    return value
