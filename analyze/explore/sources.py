"""What the explorer shows of one store (or one store read through a fitted lens): a
:class:`Source`, the analysis of the store with the questions it was computed on.

The numbers come from ``analyze_store``, with the cache of ``layercal analyze`` when there is
one (``REPORT_DIR/.cache``): the per-layer table, reliability sums and landmarks, and the
per-example answer logits and option mass the analysis keeps (``AnalysisResult.examples``). The
question texts, options, labels, subjects and categories are read from the store itself (small
arrays, one chunk each): ``resid`` is read only when the analysis is not cached.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dask
import numpy as np
import polars as pl
from numpy.typing import NDArray

from analyze.analysis import analyze_store
from analyze.calibration import MCE_MIN_COUNT
from analyze.lens import open_store
from analyze.results import AnalysisResult
from layercal.errors import StoreError

TEXT_ARRAYS = ("example_id", "subject", "category", "question", "label", "choice_mask")


class ExploreError(StoreError):
    """A store or lens cannot be shown as asked; the message says what to do."""


@dataclass(frozen=True)
class AnalysisParams:
    """The analysis an explorer shows; the defaults are ``layercal analyze``'s, so the two share
    cache entries."""

    bins: int = 10
    n_boot: int = 1000
    seed: int = 0
    mce_min_count: int = MCE_MIN_COUNT
    allow_partial: bool = False
    storage_options: dict[str, Any] | None = None


@dataclass(frozen=True)
class Source:
    """One store's analysis and its n analysed questions, in the order of ``result.examples``.

    ``questions``: polars frame (example_id, subject, category, question, label); ``choices``:
    the option texts (n lists of K strings, "" where absent); ``mask`` (n, K) bool; ``letters``
    (K,) the option letters; ``name``: a short name for legends."""

    name: str
    store: str
    result: AnalysisResult
    questions: pl.DataFrame
    choices: list[list[str]]
    mask: NDArray[np.bool_]
    letters: list[str]


def load_source(
    store: str | os.PathLike[str],
    params: AnalysisParams,
    cache_dir: Path | None,
    *,
    name: str | None = None,
) -> Source:
    """Analyse ``store`` (from the cache when it holds this analysis) and read its questions."""
    url = os.fspath(store)
    result = _analysis(url, params, cache_dir)
    return source_of(result, url, params, name=name)


def source_of(
    result: AnalysisResult, url: str, params: AnalysisParams, *, name: str | None = None
) -> Source:
    """The :class:`Source` of an analysis of the store at ``url``."""
    if not result.examples:
        raise ExploreError(
            f"the analysis of {url} holds no per-question values (a cache entry written by an "
            "older layercal?): rerun with --no-cache, or delete the cache folder"
        )
    ds = open_store(
        url,
        chunks={"example": -1, "layer": -1},
        storage_options=params.storage_options,
        allow_partial=params.allow_partial,
    )
    ds = ds.sel(example=np.asarray(result.examples["example"], np.int64))
    names = (*TEXT_ARRAYS, "choice_text", "choice")
    values = dict(zip(names, dask.compute(*(ds[c].data for c in names))))
    questions = pl.DataFrame(
        {
            c: pl.Series(np.asarray(values[c]).tolist(), dtype=pl.String)
            for c in ("example_id", "subject", "category", "question")
        }
    ).with_columns(label=pl.Series(np.asarray(values["label"], np.int64)))
    return Source(
        name=name or str(result.meta.get("label") or url),
        store=url,
        result=result,
        questions=questions,
        choices=[[str(c) for c in row] for row in np.asarray(values["choice_text"]).tolist()],
        mask=np.asarray(values["choice_mask"], bool),
        letters=[str(c) for c in np.asarray(values["choice"]).tolist()],
    )


def load_lens_source(
    store: str | os.PathLike[str], lens_dir: str | os.PathLike[str], params: AnalysisParams
) -> Source:
    """``store`` read through the fitted lens saved in ``lens_dir`` (``layercal explore
    --lens``): the lens loaded by ``analyze.load_lens``, the analysis run with it."""
    from analyze.lens.fitted.apply import load_lens

    lens = load_lens(lens_dir)  # a LensError (ValueError) says what is wrong with the folder
    # not cached: the cache key of an analysis does not name a lens
    result = _analysis(os.fspath(store), params, None, lens=lens)
    label = str(result.meta.get("label") or store)
    return source_of(result, os.fspath(store), params, name=f"{label} · {Path(lens_dir).name}")


def unique_names(sources: list[Source]) -> list[Source]:
    """The sources, each name made unique (legends tell them apart by it): a name shared by
    several gets the store's file name in front (``a · planted · synthetic/test``), then a
    number."""
    counts = {n: [s.name for s in sources].count(n) for n in {s.name for s in sources}}
    out: list[Source] = []
    for src in sources:
        name = src.name
        if counts[name] > 1:
            stem = re.sub(r"\.(zarr|zip)$", "", src.store.rstrip("/").rsplit("/", 1)[-1])
            name = f"{stem} · {name}"
        base, i = name, 2
        while name in {o.name for o in out}:
            name, i = f"{base} ({i})", i + 1
        out.append(replace(src, name=name))
    return out


def _analysis(url: str, params: AnalysisParams, cache_dir: Path | None, **extra: Any) -> Any:
    return analyze_store(
        url,
        bins=params.bins,
        n_boot=params.n_boot,
        seed=params.seed,
        mce_min_count=params.mce_min_count,
        storage_options=params.storage_options,
        allow_partial=params.allow_partial,
        cache_dir=cache_dir,
        **extra,
    )
