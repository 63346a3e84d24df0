"""What a store records about where it came from: its identity (what must match when a run
joins or resumes it), its provenance (model, data, template, libraries, code) and the metadata
of its examples."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import zarr

from extract.data.examples import MCDataset
from extract.data.prompts import PromptTemplate
from extract.model.arch import Resolved
from layercal import __version__, git_commit
from layercal import format as fmt

SELF_CHECK_TOLERANCE = "1e-3 (float32); 0.05 + 2% of max |logit| (bf16/fp16)"


def library_versions() -> dict[str, str]:
    import numcodecs
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "zarr": zarr.__version__,
        "numcodecs": numcodecs.__version__,
        "numpy": np.__version__,
        "layercal": __version__,
    }


def identity(
    loaded: Any,
    template: PromptTemplate,
    ds: MCDataset,
    ans_ids: list[int],
    w_u: np.ndarray | fmt.RowSource,
) -> dict[str, Any]:
    """The store's identity: a run may join or resume only a store of the same identity.
    ``w_u_sha256`` is of W_U's float32 bytes, hashed slab by slab from a :class:`RowSource`."""
    return {
        "model": loaded.provenance.get("model"),
        "model_source": loaded.provenance.get("source"),
        "gguf_sha256": loaded.provenance.get("gguf_sha256"),
        "revision": loaded.provenance.get("revision"),
        "dtype": loaded.provenance.get("dtype"),
        "template_sha256": template.sha256(),
        "dataset": ds.name,
        "split": ds.split,
        "dataset_sha256": ds.content_hash(),
        "answer_token_ids": ans_ids,
        "w_u_sha256": fmt.sha256_rows(w_u)
        if isinstance(w_u, fmt.RowSource)
        else fmt.sha256_bytes(w_u),
    }


def provenance(
    loaded: Any,
    ds: MCDataset,
    template: PromptTemplate,
    prompts: Sequence[str],
    res: Resolved,
    n_choices: int,
) -> dict[str, Any]:
    """Model, data, template, embedding scale, libraries and code of a new store."""
    return {
        "model": loaded.provenance,
        "dataset": dict(ds.info, content_sha256=ds.content_hash()),
        "template": {
            "name": template.name,
            "text": template.text(),
            "sha256": template.sha256(),
            "first_prompt": prompts[0],
        },
        "embed_scale": res.embed_scale,
        "libraries": library_versions(),
        "layercal_git_commit": git_commit(),
        "answer_tokens": template.continuations(n_choices),
        "self_check_tolerance": SELF_CHECK_TOLERANCE,
    }


def example_meta(ds: MCDataset, seqs: Sequence[Sequence[int]]) -> fmt.ExampleMeta:
    """The per-example arrays of a new store (``seqs``: each prompt's token ids)."""
    return fmt.ExampleMeta(
        example_id=[e.example_id for e in ds.examples],
        subject=[e.subject for e in ds.examples],
        category=[e.category for e in ds.examples],
        question=[e.question for e in ds.examples],
        choices=[list(e.choices) for e in ds.examples],
        label=np.array([e.label for e in ds.examples]),
        n_tokens=np.array([len(s) for s in seqs]),
    )
