"""Lenses fitted offline from a store: a translator per depth before the stored final norm and
unembedding, cross-fitted by question, labels never used.

- :mod:`~analyze.lens.fitted.fit`: :func:`fit_lens` (``layercal lens fit``), depth by depth.
- :mod:`~analyze.lens.fitted.temperature`, :mod:`~analyze.lens.fitted.shortcut`,
  :mod:`~analyze.lens.fitted.tuned`: the three kinds.
- :mod:`~analyze.lens.fitted.folds`: the cross-fitting folds (stratified by subject, seeded).
- :mod:`~analyze.lens.fitted.tokens`: the token set lenses are scored on, the final distribution.
- :mod:`~analyze.lens.fitted.diagnostics`: held-out KL to final and top-1 agreement per depth.
- :mod:`~analyze.lens.fitted.artifact`: the folder (``lens.json`` and arrays), :func:`load_lens`.
- :mod:`~analyze.lens.fitted.apply`: a lens bound to a store; every analysis reads through it.
"""

from __future__ import annotations

from analyze.lens.fitted.apply import BoundLens, FittedLens, bind, load_lens
from analyze.lens.fitted.artifact import KINDS, LensError
from analyze.lens.fitted.fit import fit_lens

__all__ = ["KINDS", "BoundLens", "FittedLens", "LensError", "bind", "fit_lens", "load_lens"]
