"""Steering with the model in the loop (``layercal steer --online``).

- :mod:`~extract.online.steer`: the steering hook, the forward passes with and without a KV
  cache, and :func:`model_sweeper`, the sweeper ``analyze`` is handed.
- :mod:`~extract.online.store_prompts`: a store's prompts rebuilt from its recorded template
  and examples, and the check against the stored logits.
"""

from __future__ import annotations

from extract.online.steer import SteeringCheckError, SteeringHook, model_sweeper

__all__ = ["SteeringCheckError", "SteeringHook", "model_sweeper"]
