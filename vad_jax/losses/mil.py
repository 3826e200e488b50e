"""Multiple-instance ranking loss (Sultani et al., CVPR 2018)."""

from __future__ import annotations

from typing import Optional

import jax.numpy as jnp


def mil_ranking_loss(
    scores: jnp.ndarray,
    is_anomalous: jnp.ndarray,
    margin: float = 0.5,
    lambda_smooth: float = 8e-5,
    lambda_sparse: float = 8e-5,
    valid: Optional[jnp.ndarray] = None,
) -> jnp.ndarray:
  """Sultani MIL ranking loss over all (anomalous, normal) bag pairs.

  ranking = mean over pairs (a, n) of max(0, margin - max_k s_a,k + max_k s_n,k)
  reg     = mean over anomalous bags a of
            lambda_smooth * sum_k (s_a,k - s_a,k+1)**2 + lambda_sparse * sum_k s_a,k
  total   = ranking + reg

  Fully mask-based (jit-able, no value-dependent python branching): with no
  anomalous or no normal bag the ranking term is 0; with no anomalous bag the
  whole loss is 0. Padded clips (``valid`` False) are excluded from the max,
  from smoothness (a pair counts only if both clips are valid) and sparsity.
  Bags with no valid clip are dropped from pairs and bag counts.

  Args:
    scores: [B, K] clip anomaly scores in [0, 1].
    is_anomalous: [B] bool bag labels.
    margin: hinge margin.
    lambda_smooth, lambda_sparse: regulariser weights.
    valid: [B, K] bool clip mask, or None (all valid).
  Returns:
    Scalar loss.
  """
  scores = jnp.asarray(scores)
  dt = jnp.promote_types(scores.dtype, jnp.float32)
  scores = scores.astype(dt)
  if valid is None:
    valid = jnp.ones(scores.shape, bool)
  valid = jnp.asarray(valid, bool)
  bag_ok = jnp.any(valid, axis=1)  # [B]
  anom = jnp.asarray(is_anomalous, bool) & bag_ok
  norm = ~jnp.asarray(is_anomalous, bool) & bag_ok

  neg = jnp.asarray(jnp.finfo(dt).min, dt)
  bag_max = jnp.max(jnp.where(valid, scores, neg), axis=1)
  bag_max = jnp.where(bag_ok, bag_max, 0.0)  # [B]

  pair_mask = (anom[:, None] & norm[None, :]).astype(dt)  # [B(a), B(n)]
  hinge = jnp.maximum(0.0, margin - bag_max[:, None] + bag_max[None, :])
  ranking = jnp.sum(pair_mask * hinge) / jnp.maximum(jnp.sum(pair_mask), 1.0)

  vm = valid.astype(dt)
  pair_valid = vm[:, 1:] * vm[:, :-1]
  smooth = jnp.sum(pair_valid * jnp.square(scores[:, 1:] - scores[:, :-1]), axis=1)
  sparse = jnp.sum(vm * scores, axis=1)
  reg_bag = lambda_smooth * smooth + lambda_sparse * sparse  # [B]
  a = anom.astype(dt)
  reg = jnp.sum(a * reg_bag) / jnp.maximum(jnp.sum(a), 1.0)
  return ranking + reg
