"""One-class Deep SVDD objective (Ruff et al., ICML 2018).

Hand-written because no kept library ships Deep SVDD (it is three lines of arrays).
"""

from __future__ import annotations

from typing import Optional

import jax.numpy as jnp


def _float(x: jnp.ndarray) -> jnp.ndarray:
  x = jnp.asarray(x)
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def svdd_center(z: jnp.ndarray, weights: Optional[jnp.ndarray] = None,
                eps: float = 0.1) -> jnp.ndarray:
  """Hypersphere centre: the weighted mean of the rows, pushed away from 0.

  c = sum_i w_i z_i / max(sum_i w_i, tiny); entries with |c_d| < eps become +eps (c_d >= 0) or
  -eps (c_d < 0), so no unit sits at the trivial centre a zero-weight network maps everything
  to. Zero-weight rows are ignored even if they hold inf/nan.

  Args:
    z: [N, D] features of (normal) training examples.
    weights: [N] item weights / mask (1 normal, 0 otherwise), or None.
    eps: minimum |c_d|.
  Returns:
    [D] centre.
  """
  z = _float(z)
  w = jnp.ones(z.shape[:1], z.dtype) if weights is None else jnp.asarray(weights, z.dtype)
  z = jnp.where((w != 0)[:, None], z, 0.0)
  c = jnp.sum(w[:, None] * z, axis=0) / jnp.maximum(jnp.sum(w), jnp.finfo(z.dtype).tiny)
  return jnp.where(jnp.abs(c) < eps, jnp.where(c >= 0, eps, -eps).astype(c.dtype), c)


def svdd_distance(z: jnp.ndarray, c: jnp.ndarray) -> jnp.ndarray:
  """Squared Euclidean distance to the centre, ||z - c||^2 (the anomaly score).

  Args:
    z: [..., D] features.
    c: [D] centre.
  Returns:
    [...] distances.
  """
  z = _float(z)
  return jnp.sum(jnp.square(z - jnp.asarray(c, z.dtype)), axis=-1)


def svdd_loss(z: jnp.ndarray, c: jnp.ndarray,
              weights: Optional[jnp.ndarray] = None) -> jnp.ndarray:
  """One-class Deep SVDD loss: sum_i w_i ||z_i - c||^2 / max(sum_i w_i, tiny).

  Normal examples carry weight 1, others (anomalous, padded) 0; zero-weight rows are ignored
  even if they hold inf/nan. The weight decay of the objective is the optimizer's.

  Args:
    z: [N, D] features.
    c: [D] centre (fixed: from ``svdd_center``).
    weights: [N] item weights / mask, or None (plain mean).
  Returns:
    Scalar loss.
  """
  z = _float(z)
  c = jnp.asarray(c, z.dtype)
  w = jnp.ones(z.shape[:1], z.dtype) if weights is None else jnp.asarray(weights, z.dtype)
  z = jnp.where((w != 0)[:, None], z, c)  # garbage rows cannot leak, not even into gradients
  d = svdd_distance(z, c)
  return jnp.sum(w * d) / jnp.maximum(jnp.sum(w), jnp.finfo(d.dtype).tiny)
