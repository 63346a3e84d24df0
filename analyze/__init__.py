"""layercal analysis stage: CPU only, never imports torch.

The parts, one subpackage each:

- :mod:`analyze.calibration`: answer-option probabilities, binned calibration errors,
  bootstrap intervals (per layer, and paired), temperature scaling, depth landmarks (numpy).
- :mod:`analyze.lens`: opening stores (lazily, local or remote), the logit lens on stored data
  (the answer options, and the full vocabulary in one pass), where dask runs; lenses fitted from
  a store (:mod:`analyze.lens.fitted`: temperature, shortcut, tuned; ``load_lens``).
- :mod:`analyze.report`: figures, findings text, tables and the rendered report.
- :mod:`analyze.interventions`: the unembedding SVD and null space, the calibration direction,
  steering.
- :mod:`analyze.cli`: the ``layercal`` subcommands of this stage.

:mod:`analyze.analysis` is the pipeline (:func:`analyze_store`), :mod:`analyze.results` its
output. For notebooks, the main entry points are importable from here; they load on first use,
so ``import analyze`` stays cheap::

    import analyze
    ds = analyze.open_store("stores/NAME.zarr")
    result = analyze.analyze_store(ds)
    analyze.write_report([result], "reports/NAME")
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analyze.analysis import analyze_store
    from analyze.cli import COMMANDS, add_subcommand
    from analyze.interventions.artifact import Direction
    from analyze.interventions.direction import fit_direction
    from analyze.interventions.nullspace import run_nullspace
    from analyze.interventions.steer import run_steering
    from analyze.interventions.svd import unembed_svd
    from analyze.lens.fitted.apply import load_lens
    from analyze.lens.fitted.fit import fit_lens
    from analyze.lens.store import open_store
    from analyze.report.write import write_report
    from analyze.results import AnalysisResult

# public name -> the module that defines it (imported on first access)
_API = {
    "open_store": "analyze.lens.store",
    "analyze_store": "analyze.analysis",
    "AnalysisResult": "analyze.results",
    "write_report": "analyze.report.write",
    "unembed_svd": "analyze.interventions.svd",
    "run_nullspace": "analyze.interventions.nullspace",
    "fit_direction": "analyze.interventions.direction",
    "Direction": "analyze.interventions.artifact",
    "run_steering": "analyze.interventions.steer",
    "fit_lens": "analyze.lens.fitted.fit",
    "load_lens": "analyze.lens.fitted.apply",
    # for the `layercal` command: this stage's subcommands
    "COMMANDS": "analyze.cli",
    "add_subcommand": "analyze.cli",
}
__all__ = [
    "COMMANDS",
    "AnalysisResult",
    "Direction",
    "add_subcommand",
    "analyze_store",
    "fit_direction",
    "fit_lens",
    "load_lens",
    "open_store",
    "run_nullspace",
    "run_steering",
    "unembed_svd",
    "write_report",
]

# module paths of earlier layercal versions that the docs, notebooks and dataset cards showed ->
# their home now; ``import analyze.store`` still works (the same module object as
# ``analyze.lens.store``) but warns: these aliases go in a coming release (README, "Deprecated")
MOVED = {
    "analyze.store": "analyze.lens.store",
    "analyze.landmarks": "analyze.calibration.landmarks",
    "analyze.figures": "analyze.report.figures",
    "analyze.svd": "analyze.interventions.svd",
    "analyze.nullspace": "analyze.interventions.nullspace",
    "analyze.direction": "analyze.interventions.direction",
    "analyze.steer": "analyze.interventions.steer",
}


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value  # later accesses skip this function
        return value
    raise AttributeError(f"module 'analyze' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module path (``MOVED``) as the module at its new home."""

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} is deprecated and will be removed in a coming release: import {new} "
            "instead (or the package API, e.g. `from analyze import open_store`)",
            DeprecationWarning,
            stacklevel=2,
        )
        module = importlib.import_module(new)
        spec.loader_state = module.__spec__  # the import system is about to replace it
        return module

    def exec_module(self, module: ModuleType) -> None:
        alias = module.__spec__
        if alias is not None and alias.loader_state is not None:
            module.__spec__ = alias.loader_state  # the module keeps its own spec


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())
