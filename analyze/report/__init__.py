"""What a researcher reads: figures, plain-language findings, tables, and the rendered report.

- :mod:`~analyze.report.write`: :func:`write_report` (``report.html`` and ``report.md``).
- :mod:`~analyze.report.figures`, :mod:`~analyze.report.reliability`: the figures of an
  analysis; :mod:`~analyze.report.plot` the shared plotting helpers.
- :mod:`~analyze.report.findings`: sentences derived from the numbers.
- :mod:`~analyze.report.tables`: the report's tables.
- :mod:`~analyze.report.render`: the document model (headings, paragraphs, tables, figures)
  rendered to HTML and Markdown.
- :mod:`~analyze.report.intervention_figures`, :mod:`~analyze.report.intervention_sections`,
  :mod:`~analyze.report.steer_section`: the figures and sections of ``nullspace``,
  ``direction fit`` and ``steer``;
  :mod:`~analyze.report.sections` includes them in an analysis report.
"""

from __future__ import annotations

from analyze.report.figures import (
    plot_by_group,
    plot_confidence_over_depth,
    plot_metrics_over_depth,
    write_figures,
)
from analyze.report.findings import findings
from analyze.report.reliability import (
    grid_layers,
    plot_confidence_hists,
    plot_reliability,
    plot_reliability_grid,
)
from analyze.report.write import FORMATS, write_report

__all__ = [
    "FORMATS",
    "findings",
    "grid_layers",
    "plot_by_group",
    "plot_confidence_hists",
    "plot_confidence_over_depth",
    "plot_metrics_over_depth",
    "plot_reliability",
    "plot_reliability_grid",
    "write_figures",
    "write_report",
]
