"""Direction estimators on layer deltas, and the principal-component spectra of the deltas.

``deltas``: Δ (n, m, d) = h[i, l+1] − h[i, l] for n examples and m window layers. Each estimator
returns a unit vector (d,) (methods.md section 5):

- ``mean``: the mean of Δ over examples and window layers;
- ``pca``: the top principal component of Δ **centred per layer** (each window layer's mean Δ
  subtracted, then the n·m rows stacked), sign-aligned with the mean Δ. Centring on the pooled
  mean instead would keep the differences between the layers' mean updates in the data: with
  layers whose mean updates differ, those differences dominate the top component, which then
  says how the layers differ rather than what varies within them;
- ``per_layer``: the mean of Δ at each window layer (m, d); the main vector is the last one's;
- ``contrast``: mean Δ of overconfident-wrong examples minus mean Δ of correct examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import NDArray

from analyze.interventions.artifact import DirectionError

Estimator = Literal["mean", "pca", "per_layer", "contrast"]
ESTIMATORS: tuple[Estimator, ...] = get_args(Estimator)  # the names, in order, for choices
N_COMPONENTS = 10  # explained-variance spectrum kept
Components = tuple[NDArray[np.float64], NDArray[np.float64]]  # shares (d,), components (d, d)


def unit(v: NDArray[np.floating]) -> NDArray[np.float64]:
    """v / ‖v‖ (float64); a zero vector is an error (no direction to speak of)."""
    x = np.asarray(v, np.float64)
    n = float(np.linalg.norm(x))
    if not n > 0:
        raise DirectionError("the estimated direction is the zero vector: nothing to normalise")
    return x / n


@dataclass(frozen=True)
class Fit:
    """One estimate: ``vector`` (d,) unit; ``per_layer`` (m, d) or None; ``explained`` (r,): the
    explained-variance spectrum of Δ centred per layer (pca) or None."""

    vector: NDArray[np.float64]
    per_layer: NDArray[np.float64] | None = None
    explained: NDArray[np.float64] | None = None


def _check(deltas: NDArray[np.floating]) -> NDArray[np.float64]:
    x = np.asarray(deltas, np.float64)
    if x.ndim != 3 or 0 in x.shape:
        raise DirectionError(f"deltas must have shape (n, m, d) with n, m, d >= 1; got {x.shape}")
    return x


def centred(deltas: NDArray[np.floating], centring: Literal["per_layer", "pooled"]) -> Any:
    """Δ (n, m, d) -> (n·m, d) rows minus each window layer's mean (``per_layer``) or minus the
    mean over all rows (``pooled``)."""
    x = _check(deltas)
    if centring == "per_layer":
        return (x - x.mean(axis=0, keepdims=True)).reshape(-1, x.shape[-1])
    if centring == "pooled":
        flat = x.reshape(-1, x.shape[-1])
        return flat - flat.mean(axis=0)
    raise ValueError(f"centring must be 'per_layer' or 'pooled', got {centring!r}")


def components(rows: NDArray[np.float64]) -> Components:
    """Principal components of centred ``rows`` (N, d): the explained-variance shares (d,),
    descending, and the components as columns (d, d)."""
    evals, evecs = np.linalg.eigh(rows.T @ rows)  # ascending; d x d, cheap
    evals = np.clip(evals[::-1], 0.0, None)
    return evals / max(float(evals.sum()), 1e-300), evecs[:, ::-1]


def within_components(deltas: NDArray[np.floating]) -> Components:
    """:func:`components` of Δ centred per layer: what ``pca`` fits on and ``spectra`` reports;
    compute them once and hand them to both (``within=``), an eigendecomposition of d x d."""
    return components(centred(deltas, "per_layer"))


def spectra(deltas: NDArray[np.floating], *, within: Components | None = None) -> dict[str, Any]:
    """Both centrings of Δ (n, m, d), for the report: the top ``N_COMPONENTS`` explained-variance
    shares of Δ centred per layer (``explained_variance``, what ``pca`` fits on) and of Δ centred
    on the pooled mean (``explained_variance_pooled``); ``between_layer_share``: the share of the
    pooled-centred variance that is the spread of the layers' mean updates (0 with one layer);
    ``top_cosine_per_layer_vs_pooled``: |cosine| of the two top components. ``within``: these
    deltas' :func:`within_components`, when the caller has them already."""
    x = _check(deltas)
    within_rows, pooled = centred(x, "per_layer"), centred(x, "pooled")
    ev_w, vec_w = within if within is not None else components(within_rows)
    ev_p, vec_p = components(pooled)
    total = float((pooled**2).sum())
    return {
        "explained_variance": ev_w[:N_COMPONENTS].tolist(),
        "explained_variance_pooled": ev_p[:N_COMPONENTS].tolist(),
        "between_layer_share": 1.0 - float((within_rows**2).sum()) / total if total > 0 else 0.0,
        "top_cosine_per_layer_vs_pooled": float(abs(vec_w[:, 0] @ vec_p[:, 0])),
    }


def estimate(
    deltas: NDArray[np.floating],
    estimator: Estimator,
    *,
    overconfident_wrong: NDArray[np.bool_] | None = None,
    correct: NDArray[np.bool_] | None = None,
    within: Components | None = None,
) -> Fit:
    """Fit a direction from ``deltas`` (n, m, d); ``contrast`` also needs the two (n,) masks.
    ``within``: these deltas' :func:`within_components`, when the caller has them (``pca`` then
    does not compute them again)."""
    x = _check(deltas)
    mean = x.mean(axis=(0, 1))
    if estimator == "mean":
        return Fit(unit(mean))
    if estimator == "per_layer":
        rows = np.stack([unit(r) for r in x.mean(axis=0)])
        return Fit(rows[-1], per_layer=rows)
    if estimator == "pca":
        explained, vecs = within if within is not None else within_components(x)
        top = vecs[:, 0]
        top = top if top @ mean >= 0 else -top
        return Fit(unit(top), explained=explained[:N_COMPONENTS])
    if estimator == "contrast":
        if overconfident_wrong is None or correct is None:
            raise DirectionError("the contrast estimator needs overconfident_wrong and correct")
        if not overconfident_wrong.any() or not correct.any():
            raise DirectionError(
                f"the contrast estimator needs both groups in the fit split; it has "
                f"{int(overconfident_wrong.sum())} overconfident-wrong and {int(correct.sum())} "
                "correct examples. Use more examples (--fit-fraction) or another --estimator."
            )
        return Fit(unit(x[overconfident_wrong].mean(axis=(0, 1)) - x[correct].mean(axis=(0, 1))))
    raise DirectionError(f"unknown estimator {estimator!r}; choose one of {ESTIMATORS}")
