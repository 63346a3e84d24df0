"""The temperature lens: one label-free scalar per depth, T_l = argmin KL(final || softmax(z_l / T)).

z_l are the logit lens's logits at depth l on the fold's token set (:mod:`.tokens`), the final
distribution is the lens at the last depth on the same set, both renormalised over it. With
beta = 1 / T the mean KL is convex in beta (its second derivative is the variance of z_l under
the lens), so a bounded scalar search on log beta finds the one minimum. No label is read.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar

from analyze.lens.fitted.tokens import set_log_probs

BETA_BOUNDS = (1e-3, 1e3)  # 1 / T: temperatures from 0.001 to 1000


def mean_kl(log_p: NDArray[np.float64], z: NDArray[np.float64], beta: float) -> float:
    """Mean over examples of KL(p || softmax(beta z)); ``log_p``, ``z``: (n, S)."""
    log_q = set_log_probs(beta * z)
    return float(np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=-1)))


def fit_beta(log_p: NDArray[np.float64], z: NDArray[np.float64]) -> float:
    """The inverse temperature minimising :func:`mean_kl`, within BETA_BOUNDS."""
    lo, hi = np.log(BETA_BOUNDS[0]), np.log(BETA_BOUNDS[1])
    res = minimize_scalar(
        lambda t: mean_kl(log_p, z, float(np.exp(t))),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-9},
    )
    return float(np.exp(res.x))
