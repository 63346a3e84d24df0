"""The logit lens on a store, lazily with dask.

Answer-token logits are cheap (K rows of W_U); full-vocabulary quantities (log-sum-exp, option
mass, entropy over the vocabulary) are computed in vocab chunks so memory stays bounded.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr

from analyze.store import norm_spec_of
from layercal.lens import lens_logits


def answer_logits(ds: xr.Dataset) -> xr.DataArray:
    """Logit-lens logits on the answer tokens recomputed from ``resid``: (example, layer, choice)."""
    ids = np.asarray(ds["answer_token_ids"].values)
    w = np.asarray(ds["W_U"].isel(vocab=ids).values, dtype=np.float64)
    b = np.asarray(ds["lm_head_bias"].isel(vocab=ids).values) if "lm_head_bias" in ds else None
    spec = norm_spec_of(ds)
    resid = ds["resid"].data
    if not isinstance(resid, da.Array):
        resid = da.from_array(resid, chunks=(2048, 1, -1))
    resid = resid.rechunk({2: -1})
    z = resid.map_blocks(
        lambda h: lens_logits(h, w, spec, b).astype(np.float32),
        chunks=(*resid.chunks[:2], (len(ids),)),
        dtype=np.float32,
    )
    return xr.DataArray(
        z,
        dims=("example", "layer", "choice"),
        coords={k: ds[k] for k in ("example", "layer", "choice")},
        name="lens_answer_logits",
    )


def check_against_recorded(ds: xr.Dataset, z: np.ndarray, atol: float = 1e-3) -> float:
    """Max |recomputed - recorded| lens logits; raises when above ``atol`` (float32 stores)."""
    rec = np.asarray(ds["lens_logits"].values)
    diff = float(np.nanmax(np.abs(rec - z)))
    if not diff <= atol:
        raise ValueError(
            f"lens logits recomputed from resid differ from those recorded at extraction by "
            f"{diff:.3g} (> {atol}): the store's final-norm/W_U data and its activations disagree. "
            "Run `layercal store verify` on it."
        )
    return diff
