"""The explorer: one self-contained HTML page per store (or several stores overlaid) to move
through depth and look at the questions (``layercal explore``).

- :mod:`~analyze.explore.sources`: a store's analysis (from the analysis cache when there is
  one) and its questions, as a :class:`Source`; ``--lens`` plumbing.
- :mod:`~analyze.explore.questions`: per question, the commitment depth and the depths where
  confidence falls.
- :mod:`~analyze.explore.payload`: the numbers the page holds, packed into one blob.
- :mod:`~analyze.explore.specs`: the charts, as Vega-Lite specifications written with altair.
- :mod:`~analyze.explore.page`: the HTML page (``explorer.html``, ``explorer.css``,
  ``explorer_metrics.js``, ``explorer_rows.js`` and ``explorer.js`` beside these modules, the
  Vega JavaScript inline).
"""

from __future__ import annotations

from analyze.explore.page import render_page, write_explorer
from analyze.explore.payload import pack, page_payload, store_payload, unpack
from analyze.explore.questions import (
    FALL_MIN,
    commitment_depth,
    confidence_falls,
    option_probs,
    question_summary,
)
from analyze.explore.sources import (
    AnalysisParams,
    ExploreError,
    Source,
    load_lens_source,
    load_source,
    source_of,
    unique_names,
)

__all__ = [
    "FALL_MIN",
    "AnalysisParams",
    "ExploreError",
    "Source",
    "commitment_depth",
    "confidence_falls",
    "load_lens_source",
    "load_source",
    "option_probs",
    "pack",
    "page_payload",
    "question_summary",
    "render_page",
    "source_of",
    "store_payload",
    "unique_names",
    "unpack",
    "write_explorer",
]
