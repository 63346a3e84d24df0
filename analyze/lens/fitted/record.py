"""``lens.json``: what a fitted lens records of its store, folds, token set, penalties and fit."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from analyze.lens.fitted import shortcut, tuned
from analyze.lens.fitted.artifact import LENS_FORMAT, LENS_VERSION, TRANSFER_RULE, w_u_fingerprint
from analyze.lens.fitted.folds import FOLD_RULE
from analyze.lens.fitted.tokens import TOKEN_SET_RULE, TokenSets
from analyze.lens.store import store_hash

TRANSLATOR = {
    "temperature": "logits / T_l (the residual unchanged): softmax(z_l / T_l)",
    "shortcut": "h -> h + h B_l + b_l, then the stored final norm and unembedding",
    "tuned": "h -> h + h B_l + b_l, then the stored final norm and unembedding",
}

PENALTY_RULES = {
    "temperature": "none: one scalar per depth and fold",
    "shortcut": "ridge towards the identity (B = 0, b = 0); penalty per depth and fold by "
    "leave-one-out cross-validation on the fold's training examples (exact leave-one-out "
    f"residuals of {shortcut.LOO_ROWS} seeded training examples, from one eigendecomposition of "
    "the training Gram matrix, or the SVD of the training design when it has fewer rows than "
    "columns); grid: "
    f"{', '.join(f'{g:g}' for g in shortcut.PENALTY_GRID)} times the mean eigenvalue, and inf "
    "(the logit lens); `penalty` is the chosen multiple",
    "tuned": "early stopping by inner validation: L-BFGS from the identity on "
    f"{1 - tuned.VALIDATION_FRACTION:.0%} of the fold's training examples, keeping the iterate "
    f"of least KL on the other {tuned.VALIDATION_FRACTION:.0%} (stopped after "
    f"{tuned.PATIENCE} iterations without improvement)",
}


def lens_record(
    ds: xr.Dataset,
    kind: str,
    k: int,
    seed: int,
    fold: NDArray[np.int64],
    sets: TokenSets,
    records: list[list[dict[str, Any]]],
    rows: list[dict[str, Any]],
    max_iter: int,
) -> dict[str, Any]:
    from layercal import __version__, git_commit

    ident = ds.attrs["layercal"]["identity"]
    """lens.json of a fit (without ``arrays`` and ``fit_seconds``, added once written):
    ``records`` per fold and depth, ``rows`` the per-depth diagnostics."""
    penalties: dict[str, Any] = {"rule": PENALTY_RULES[kind], "per_fold": records}
    if kind == "tuned":
        penalties["max_iter"] = max_iter
    return {
        "format": LENS_FORMAT,
        "format_version": LENS_VERSION,
        "kind": kind,
        "translator": TRANSLATOR[kind],
        "store": str(ds.encoding.get("source", "")),
        "store_hash": store_hash(ds),
        "w_u_sha256": w_u_fingerprint(ds),
        "model": ident.get("model"),
        "dataset": ident.get("dataset"),
        "split": ident.get("split"),
        "n_examples": int(ds.sizes["example"]),
        "n_depth": int(ds.sizes["layer"]),
        "hidden": int(ds.sizes["hidden"]),
        "labels_used": False,
        "folds": {"k": k, "seed": seed, "rule": FOLD_RULE, "sizes": np.bincount(fold).tolist()},
        "token_set": {"rule": TOKEN_SET_RULE, "top_k": sets.top_k, "size": int(sets.ids.shape[1])},
        "penalties": penalties,
        "transfer_rule": TRANSFER_RULE,
        "diagnostics": {
            "measured_on": "held-out examples, each through its own fold's translator, on that "
            "fold's token set",
            "per_depth": rows,
        },
        "layercal_version": __version__,
        "git_commit": git_commit(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
