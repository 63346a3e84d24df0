"""One store -> one :class:`AnalysisResult`: per-layer metrics, groups, temperature, landmarks.

``analyze_store`` reads ``resid`` once (``analyze.lens.vocab.lens_pass``); everything after that works
on (layers, examples, options) arrays. Splits: the examples are divided, per subject and seeded,
into a "fit" half (``temperature_split`` of each subject) and an "eval" half. Temperature scaling
is always fitted per layer on the fit half and measured on the eval half, whatever ``split`` says;
``split`` only chooses the examples every other metric is computed on (all, fit or eval).
Results are cached under ``cache_dir/<key>/``, key = sha256 of the store's content fingerprint and
every parameter, so a rerun with the same parameters does not read ``resid`` at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from analyze._compute import compute
from analyze.calibration import FLOOR_SIMULATIONS, MCE_MIN_COUNT
from analyze.lens import IncompleteStoreError, open_store
from analyze.lens.fitted import FittedLens, load_lens
from analyze.results import AnalysisResult
from layercal import __version__

Split = Literal["all", "fit", "eval"]
GroupBy = Literal["subject", "category"]
# full-vocab lens sample: ~25 ms CPU per example over 31 SmolLM2 layers (2*V*d flops per row).
# A store that records lens_entropy needs the sample only to cross-check lens_lse and
# lens_entropy: CHECK_VOCAB_EXAMPLES. One written before that gets its vocab_entropy column from
# the sample itself: DEFAULT_VOCAB_EXAMPLES, under a third of one read of resid at full MMLU
# scale (docs/benchmarks.md).
DEFAULT_VOCAB_EXAMPLES = 32
CHECK_VOCAB_EXAMPLES = 8
VocabExamples = int | None | Literal["auto"]
CACHE_VERSION = 6  # bump when the computation changes, so old cache entries are not reused
# 4: chance = mean 1/K_i, interval-based rise, peak chosen and phase tested on separate halves,
#    MCE over bins of >= MCE_MIN_COUNT by default, option mass from one computation
# 5: issue 17's endpoints (ece_floor, smece + interval, gap, auroc, Brier decomposition),
#    landmark intervals, the cross-fitted plateau-to-last contrast, ΔNLL/ΔBrier
# 6: entries keep the per-example answer logits and option mass (examples.npz: the explorer)
PASS_CHUNKS = {"example": 256, "layer": -1}  # one shard of a default store per task


def analyze_store(
    ds_or_path: xr.Dataset | str | os.PathLike[str],
    *,
    bins: int = 10,
    mce_min_count: int = MCE_MIN_COUNT,
    n_boot: int = 1000,
    seed: int = 0,
    layers: Sequence[int] | None = None,
    split: Split = "all",
    group_by: Sequence[GroupBy] = ("subject", "category"),
    temperature_split: float = 0.5,
    vocab_examples: VocabExamples = "auto",
    storage_options: dict[str, Any] | None = None,
    allow_partial: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    group_intervals: bool = False,
    lens: str | os.PathLike[str] | FittedLens | None = None,
    transfer: bool = False,
) -> AnalysisResult:
    """Analyse one store (a path, an fsspec URL or a Dataset from ``open_store``).

    ``layers``: depths to report (None = all); the last depth is always added, being the
    reference of kl_to_last, flip_rate and the landmarks. ``vocab_examples``: how many of the
    analysed examples (seeded sample) get the full-vocabulary lse and entropy recomputed; None =
    all; "auto" = CHECK_VOCAB_EXAMPLES when the store records ``lens_entropy`` (the column then
    averages the recorded entropy of every example, the sample cross-checks it), else
    DEFAULT_VOCAB_EXAMPLES (the column averages the sample).
    ``temperature_split``: fraction of each subject in the fit half. ``mce_min_count``: MCE
    counts only bins of at least this many examples (default 10: with 1, one example sets MCE).
    ``cache_dir``: where results are cached (None: no cache).
    ``group_intervals``: also bootstrap every group's smECE (by_group's smece_lo/smece_hi; nan
    otherwise): a bandwidth search per resample, group and layer, about 50 us each on 2 cores,
    so off by default (57 subjects x 31 layers x 1,000 resamples is over a minute).
    ``lens``: None (the logit lens), ``"logit"`` (the same, named: a ``lens`` column and the
    contrasts of :mod:`analyze.lens.fitted.compare`), or a folder from ``layercal lens fit`` (or
    a :class:`~analyze.lens.fitted.FittedLens`) to read every number through, named the same
    way; ``transfer``: allow a lens fitted on another store of the same model.
    Raises StoreError for a store that cannot be read as asked (LensError: a lens).
    """
    t0 = time.perf_counter()
    ds, small, url = _open(ds_or_path, storage_options, allow_partial)
    _check(split, temperature_split, group_by, bins=bins, n_boot=n_boot, mce=mce_min_count)
    fitted = lens if lens is None or isinstance(lens, FittedLens) else named_lens(lens)
    recorded_entropy = "lens_entropy" in small and not isinstance(fitted, FittedLens)
    vocab_examples = resolve_vocab_examples(vocab_examples, recorded_entropy)
    positions = select_layers(ds, layers)
    params: dict[str, Any] = {
        "bins": int(bins),
        "mce_min_count": int(mce_min_count),
        "bootstrap": {"n_boot": int(n_boot), "seed": int(seed), "alpha": 0.05},
        "seed": int(seed),
        "layers": [int(ds["layer"].values[i]) for i in positions],
        "split": split,
        "group_by": list(group_by),
        "temperature_split": float(temperature_split),
        "vocab_examples": vocab_examples,
        "floor_simulations": FLOOR_SIMULATIONS,
        "group_intervals": bool(group_intervals),
        "cache_version": CACHE_VERSION,
    }
    bound = _bind(fitted, ds.isel(layer=positions), transfer, params)
    key = cache_key(small, params)
    entry = Path(cache_dir) / key if cache_dir is not None else None
    if entry is not None and (entry / "meta.json").is_file():
        res = AnalysisResult.load(entry)
        res.meta.update(store=url, cache_hit=True, cache_dir=str(entry))
        return res
    if len(positions) < ds.sizes["layer"]:
        ds, small = ds.isel(layer=positions), small.isel(layer=positions)
    res = compute(ds, small, params, url, bound)
    res.meta.update(cache_key=key, cache_hit=False)
    res.meta["timing"]["total_s"] = time.perf_counter() - t0
    if entry is not None:
        _save_atomic(res, entry)
        res.meta["cache_dir"] = str(entry)
    return res


def _check(split: str, temperature_split: float, group_by: Sequence[str], **counts: int) -> None:
    """ValueError for a parameter ``analyze_store`` cannot use."""
    if split not in ("all", "fit", "eval"):
        raise ValueError(f"split must be 'all', 'fit' or 'eval', got {split!r}")
    if not 0.0 < temperature_split < 1.0:
        raise ValueError(f"temperature_split must be in (0, 1), got {temperature_split!r}")
    bad = sorted(set(group_by) - {"subject", "category"})
    if bad:
        raise ValueError(f"group_by accepts 'subject' and 'category', got {bad}")
    for name, value in (
        ("bins", counts["bins"]),
        ("n_boot", counts["n_boot"]),
        ("mce_min_count", counts["mce"]),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def resolve_vocab_examples(value: VocabExamples, recorded_entropy: bool) -> int | None:
    """The number of examples given the full-vocabulary lens (None = all) for ``value``."""
    if value == "auto":
        return CHECK_VOCAB_EXAMPLES if recorded_entropy else DEFAULT_VOCAB_EXAMPLES
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(
            f"vocab_examples must be 'auto', None (all) or an integer >= 0, got {value!r}"
        )
    return value


def _bind(fitted: Any, ds: xr.Dataset, transfer: bool, params: dict[str, Any]) -> Any:
    """The fitted lens bound to ``ds`` (refused when the store is not the lens's; None for the
    logit lens); ``params`` gets the lens's record (part of the cache key)."""
    bound = None
    if isinstance(fitted, FittedLens):
        bound = fitted.bind(ds, transfer)
        params["lens"] = {k: v for k, v in bound.record().items() if k != "path"}
    elif fitted is not None:
        params["lens"] = {"name": "logit", "kind": "logit"}
    return bound


def named_lens(lens: str | os.PathLike[str]) -> FittedLens | str:
    """``"logit"``, or the lens folder at ``lens`` loaded."""
    return "logit" if os.fspath(lens) == "logit" else load_lens(lens)


def _open(
    ds_or_path: xr.Dataset | str | os.PathLike[str],
    storage_options: dict[str, Any] | None,
    allow_partial: bool,
) -> tuple[xr.Dataset, xr.Dataset, str]:
    """Two views of one store: chunked for the pass over resid, and with every example in one
    chunk for the small per-example arrays (the labels, masks and ids are stored as single
    chunks, which many example chunks would each decode again). Returns (pass, small, url)."""
    if not isinstance(ds_or_path, xr.Dataset):
        url = os.fspath(ds_or_path)
        views = [
            open_store(url, chunks=ch, storage_options=storage_options, allow_partial=allow_partial)
            for ch in (PASS_CHUNKS, {"example": -1, "layer": -1})
        ]
        return views[0], views[1], url
    ds, url = ds_or_path, str(ds_or_path.encoding.get("source", "<dataset>"))
    written = np.asarray(ds["written"].values, bool)
    if not written.all():
        if not allow_partial:
            raise IncompleteStoreError(
                f"the dataset is missing {int((~written).sum())} of {written.size} examples; "
                "finish the extraction, or pass allow_partial=True"
            )
        ds = ds.isel(example=np.flatnonzero(written))
    return ds.chunk(PASS_CHUNKS), ds.chunk({"example": -1}), url


def select_layers(ds: xr.Dataset, layers: Sequence[int] | None) -> list[int]:
    """Positions along ``ds.layer`` of the requested depths plus the last; checks the range."""
    have = [int(x) for x in ds["layer"].values]
    if layers is None:
        return list(range(len(have)))
    missing = sorted(set(int(x) for x in layers) - set(have))
    if missing:
        raise ValueError(f"layers {missing} are not in the store, which has depths 0..{have[-1]}")
    return sorted({have.index(int(x)) for x in layers} | {len(have) - 1})


def fingerprint(ds: xr.Dataset) -> str:
    """sha256 of what the store holds: identity, per-block activation digests, written examples."""
    h = hashlib.sha256(json.dumps(ds.attrs["layercal"]["identity"], sort_keys=True).encode())
    h.update("\n".join(str(x) for x in ds["block_sha256"].values).encode())
    h.update(np.asarray(ds["example"].values, np.int64).tobytes())  # which examples are kept
    h.update(np.asarray(ds["written"].values, bool).tobytes())
    return h.hexdigest()


def cache_key(ds: xr.Dataset, params: dict[str, Any]) -> str:
    """Cache key: sha256 of the store fingerprint, the parameters (JSON, sorted keys; they hold
    CACHE_VERSION) and layercal's version, so results of older code are recomputed."""
    text = json.dumps(
        {"store": fingerprint(ds), "params": params, "layercal": __version__},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _save_atomic(res: AnalysisResult, entry: Path) -> None:
    tmp = entry.with_name(f".tmp-{entry.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    res.save(tmp, examples=True)
    try:
        os.replace(tmp, entry)
    except OSError:  # another process stored the same entry meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
