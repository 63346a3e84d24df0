"""Interventions on stored residuals, and what they need (CPU, offline).

- :mod:`~analyze.interventions.svd`: the SVD of the effective unembedding, its null space.
- :mod:`~analyze.interventions.nullspace`: ablations of null, top and random subspaces.
- :mod:`~analyze.interventions.direction`: the calibration direction fit from layer deltas
  (:mod:`~analyze.interventions.fit_data`: what it reads from a store), saved as an artifact
  (:mod:`~analyze.interventions.artifact`).
- :mod:`~analyze.interventions.steer`: steering with a direction and its baselines
  (:mod:`~analyze.interventions.steer_data`: the data types; ``steer_methods``: the methods and
  their dev choice by the one rule of ``steer_select``; ``steer_controls``: temperature, random
  directions with the direction's null-space share, direction+temperature; ``steer_splits``: dev,
  test and transfer rows; ``steer_tables`` and ``steer_power``: the tables, the MDE and the
  verdicts). Steering inside the model (``--online``) is the extraction stage's
  (``extract.online.steer``), handed in as a ``Sweeper``.

Their figures and report sections are in :mod:`analyze.report`.
"""

from __future__ import annotations

from analyze.interventions.artifact import (
    Direction,
    DirectionError,
    DirectionMismatchError,
    check_direction,
)
from analyze.interventions.direction import ESTIMATORS, fit_direction
from analyze.interventions.nullspace import NullspaceResult, run_nullspace
from analyze.interventions.steer import SteerResult, run_steering
from analyze.interventions.steer_data import Sweeper
from analyze.interventions.svd import UnembedSVD, default_k, unembed_svd

__all__ = [
    "ESTIMATORS",
    "Direction",
    "DirectionError",
    "DirectionMismatchError",
    "NullspaceResult",
    "SteerResult",
    "Sweeper",
    "UnembedSVD",
    "check_direction",
    "default_k",
    "fit_direction",
    "run_nullspace",
    "run_steering",
    "unembed_svd",
]
