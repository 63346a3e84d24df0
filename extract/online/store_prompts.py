"""A store's prompts rebuilt for the model, and steered logits recomputed offline from it.

Online steering needs the prompts of the store's examples: they are rendered again from the
store's questions and options with the template recorded in its provenance (zero-shot stores),
and each must tokenise to the length the store recorded. At the last depth, online steering must
equal the logit lens on the stored residual plus α·s·d: ``offline_difference`` measures that.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import zarr

from extract.forward.tokens import tokenize
from layercal import format as fmt
from layercal.lens import lens_logits


def store_prompts(g: zarr.Group, rows: Sequence[int], tokenizer: Any) -> list[str]:
    """The prompts of store ``rows``, rebuilt from its questions and template (zero-shot).

    Each must tokenise to the length recorded in the store, else the store's prompts cannot be
    reproduced and the error says so.
    """
    from extract.data.examples import MCExample
    from extract.data.prompts import PromptTemplate

    prov = fmt.attrs(g).get("provenance", {})
    if int(prov.get("dataset", {}).get("shots", 0) or 0) > 0:
        raise ValueError(
            "this store was extracted with few-shot prompts; online steering rebuilds prompts "
            "from the store and supports zero-shot stores only. Steer offline at the last layer."
        )
    template = PromptTemplate.from_dict(json.loads(prov["template"]["text"]))
    r = np.asarray(rows, dtype=np.int64)
    text = {k: np.asarray(fmt.array(g, k)[...]) for k in ("example_id", "subject", "category")}
    question = np.asarray(fmt.array(g, "question")[...])
    choice_text = np.asarray(fmt.array(g, "choice_text")[...])
    mask = np.asarray(fmt.array(g, "choice_mask")[...])
    label = np.asarray(fmt.array(g, "label")[...])
    n_tokens = np.asarray(fmt.array(g, "n_tokens")[...])
    prompts = []
    for i in r.tolist():
        ex = MCExample(
            example_id=str(text["example_id"][i]),
            subject=str(text["subject"][i]),
            category=str(text["category"][i]),
            question=str(question[i]),
            choices=tuple(str(c) for c, m in zip(choice_text[i], mask[i]) if m),
            label=int(label[i]),
        )
        prompts.append(template.render(ex))
    lengths = [len(s) for s in tokenize(tokenizer, prompts)]
    bad = [int(i) for i, n in zip(r.tolist(), lengths) if n != int(n_tokens[i])]
    if bad:
        raise ValueError(
            f"the prompts of store examples {bad[:5]} do not tokenise to the recorded lengths: "
            "this tokenizer or template is not the one the store was extracted with."
        )
    return prompts


def offline_difference(
    g: zarr.Group,
    rows: Any,
    online: np.ndarray,
    vector: np.ndarray,
    scale: float,
    alphas: Sequence[float],
) -> float:
    """max |online − offline| over α and rows; offline = the store's lens on its stored
    last-depth residual + α·s·d (``online``: (A, len(rows), K))."""
    ids = np.asarray(fmt.array(g, "answer_token_ids")[...]).tolist()
    w = np.asarray(fmt.array(g, "W_U").get_orthogonal_selection((ids, slice(None))))
    bias = None
    if "lm_head_bias" in g:
        bias = np.asarray(fmt.array(g, "lm_head_bias").get_orthogonal_selection(ids))
    r = np.asarray(rows, np.int64)
    order = np.argsort(r)
    resid = fmt.array(g, "resid")
    last = resid.shape[1] - 1
    h_sorted = resid.get_orthogonal_selection((r[order].tolist(), last, slice(None)))
    h = np.empty((r.size, resid.shape[2]))
    h[order] = np.asarray(h_sorted, np.float64)
    spec = fmt.norm_spec(g)
    off = np.stack([lens_logits(h + a * scale * vector, w, spec, bias) for a in alphas])
    return float(np.abs(online - off).max())
