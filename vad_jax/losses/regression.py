"""Regression losses."""

from __future__ import annotations

import jax.numpy as jnp
import optax


def smooth_l1(pred: jnp.ndarray, target: jnp.ndarray, beta: float = 1.0) -> jnp.ndarray:
  """Smooth-L1 (Fast R-CNN / PyTorch convention), mean over all elements.

  Per element with d = pred - target:
    0.5 * d**2 / beta      if |d| < beta
    |d| - 0.5 * beta       otherwise

  Reuses ``optax.huber_loss(pred, target, delta=beta) / beta``, which is
  identical (Huber = beta * smooth-L1). Requires ``beta > 0``.

  Args:
    pred, target: arrays of the same (broadcastable) shape [...].
    beta: transition point, > 0.
  Returns:
    Scalar mean loss.
  """
  return jnp.mean(optax.huber_loss(pred, target, delta=beta)) / beta
