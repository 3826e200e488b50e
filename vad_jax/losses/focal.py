"""Class weighting and softmax focal loss."""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp


def class_alpha_from_counts(counts: jnp.ndarray, eps: float = 1.0) -> jnp.ndarray:
  """Inverse-frequency class weights, normalised to mean 1.

  alpha_c = (1 / (n_c + eps)) / mean_c'(1 / (n_c' + eps)); ``eps`` keeps
  absent classes (n_c = 0) finite.

  Args:
    counts: [C] per-class sample counts.
    eps: additive smoothing, > 0.
  Returns:
    [C] float32 weights with mean 1.
  """
  inv = 1.0 / (jnp.asarray(counts, jnp.float32) + eps)
  return inv / jnp.mean(inv)


def class_balanced_alpha(counts: jnp.ndarray, beta: float = 0.9999) -> jnp.ndarray:
  """Effective-number class weights (Cui et al. 2019), normalised to sum to C.

  alpha_c ∝ (1 - beta) / (1 - beta**n_c). Counts are clamped to >= 1 so that
  absent classes get the (finite) weight of a singleton class.

  Args:
    counts: [C] per-class sample counts.
    beta: in [0, 1).
  Returns:
    [C] float32 weights summing to C.
  """
  n = jnp.maximum(jnp.asarray(counts, jnp.float32), 1.0)
  w = (1.0 - beta) / (1.0 - jnp.power(beta, n))
  return w * (w.shape[0] / jnp.sum(w))


def softmax_focal_loss(
    logits: jnp.ndarray,
    labels: jnp.ndarray,
    alpha: Optional[jnp.ndarray] = None,
    gamma: float = 2.0,
    weights: Optional[jnp.ndarray] = None,
) -> jnp.ndarray:
  """Multi-class (softmax) focal loss (Lin et al. 2017).

  Per item: l_i = -alpha[y_i] * (1 - p_{y_i})**gamma * log p_{y_i}, with
  log p from ``jax.nn.log_softmax`` and 1 - p = -expm1(log p) (stable when
  p -> 1). Reduction: sum(w * l) / max(sum(w), tiny), w defaulting to 1, so
  zero-weight (padded) items are ignored (even if their logits are inf/nan). Written by hand because optax only
  ships the sigmoid (binary) focal loss. gamma = 0 gives (alpha-)weighted
  cross-entropy.

  Args:
    logits: [N, C] unnormalised scores.
    labels: [N] int class ids in [0, C).
    alpha: [C] per-class weights or None (all 1).
    gamma: focusing parameter >= 0 (python float, or traced under jit).
    weights: [N] per-item weights / mask, or None.
  Returns:
    Scalar loss.
  """
  logits = jnp.asarray(logits)
  log_p = jax.nn.log_softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), axis=-1)
  labels = jnp.asarray(labels, jnp.int32)
  log_pt = jnp.take_along_axis(log_p, labels[:, None], axis=-1)[:, 0]  # [N]
  loss = -log_pt
  if not (isinstance(gamma, (int, float)) and gamma == 0):  # traced gamma is fine too
    one_minus_pt = jnp.clip(-jnp.expm1(log_pt), 0.0, 1.0)
    loss = loss * jnp.power(one_minus_pt, gamma)
  if alpha is not None:
    loss = loss * jnp.asarray(alpha, loss.dtype)[labels]
  if weights is None:
    w = jnp.ones_like(loss)
  else:
    w = jnp.asarray(weights, loss.dtype)
  loss = jnp.where(w != 0, loss, 0.0)  # garbage (inf/nan) in padded rows cannot leak
  return jnp.sum(w * loss) / jnp.maximum(jnp.sum(w), jnp.finfo(loss.dtype).tiny)
