"""layercal extraction stage: model + benchmark -> activation store (needs torch).

The parts, one subpackage each:

- :mod:`extract.data`: benchmarks as multiple-choice examples (:class:`MCExample`,
  :class:`MCDataset`, :func:`load_dataset`) and the prompts they are rendered into.
- :mod:`extract.model`: loading the model (built-ins, GGUF, ``--dtype auto``) and the
  architecture table.
- :mod:`extract.forward`: token ids, batches and the last-token capture.
- :mod:`extract.write`: creating or joining a store, the block loop, provenance.
- :mod:`extract.online`: steering with the model in the loop (``layercal steer --online``).

:mod:`extract.config` is :class:`ExtractConfig` (the CLI flags and the run record come from it),
:mod:`extract.run` the job, :mod:`extract.cli` ``layercal extract`` (registered on the ``layercal``
command through :func:`add_subcommand`). The main entry points are
importable from here; they load on first use, so ``import extract`` stays cheap::

    import extract
    cfg = extract.ExtractConfig(model="smollm2-135m", dataset="mmlu", out="stores/s.zarr")
    summary = extract.extract(cfg)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from extract.cli import COMMANDS, add_subcommand
    from extract.config import ExtractConfig
    from extract.data.examples import MCDataset, MCExample
    from extract.data.load import load_dataset
    from extract.model.load import load_model
    from extract.online.steer import model_sweeper
    from extract.run import extract

# public name -> the module that defines it (imported on first access)
_API = {
    "extract": "extract.run",
    "ExtractConfig": "extract.config",
    "load_model": "extract.model.load",
    "load_dataset": "extract.data.load",
    "MCDataset": "extract.data.examples",
    "MCExample": "extract.data.examples",
    # for the `layercal` command: this stage's subcommands, and `steer --online`'s model
    "COMMANDS": "extract.cli",
    "add_subcommand": "extract.cli",
    "model_sweeper": "extract.online.steer",
}
__all__ = [
    "COMMANDS",
    "ExtractConfig",
    "MCDataset",
    "MCExample",
    "add_subcommand",
    "extract",
    "load_dataset",
    "load_model",
    "model_sweeper",
]


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value  # later accesses skip this function
        return value
    raise AttributeError(f"module 'extract' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
