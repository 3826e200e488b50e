"""Imbalance-robust classification losses: logit adjustment, class-balanced focal, balanced
cross-entropy, supervised contrastive.

Hand-written because optax ships none of them (its losses take no class counts, and it has no
supervised contrastive loss).
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from vad_jax.losses.focal import class_balanced_alpha, softmax_focal_loss


def _clean(logits: jnp.ndarray, weights: Optional[jnp.ndarray]) -> jnp.ndarray:
  """Zeroes the logits of zero-weight rows, so inf/nan there cannot reach the gradients
  (``softmax_focal_loss`` keeps them out of the value only)."""
  if weights is None:
    return jnp.asarray(logits)
  return jnp.where((jnp.asarray(weights) != 0)[:, None], logits, 0.0)


def log_prior(counts: jnp.ndarray) -> jnp.ndarray:
  """Log class prior from training counts.

  log pi_c = log(n_c / sum_c' n_c'), counts clamped to >= 1 first (an absent class gets the
  finite prior of a singleton; the clamped priors sum to 1).

  Args:
    counts: [C] per-class sample counts.
  Returns:
    [C] float32 log priors.
  """
  n = jnp.maximum(jnp.asarray(counts, jnp.float32), 1.0)
  return jnp.log(n) - jnp.log(jnp.sum(n))


def logit_adjust(logits: jnp.ndarray, log_prior: jnp.ndarray, tau: float = 1.0) -> jnp.ndarray:
  """Logit-adjusted logits (Menon et al. 2021): logits + tau * log_prior.

  Apply to the training logits only (the cross-entropy of the shifted logits is the
  logit-adjusted loss); predict with the raw logits.

  Args:
    logits: [..., C] unnormalised scores.
    log_prior: [C] from ``log_prior``.
    tau: temperature of the adjustment (1 is Fisher-consistent for balanced error).
  Returns:
    [..., C] adjusted logits.
  """
  logits = jnp.asarray(logits)
  dt = jnp.promote_types(logits.dtype, jnp.float32)
  return logits.astype(dt) + tau * jnp.asarray(log_prior, dt)


def class_balanced_focal_loss(
    logits: jnp.ndarray,
    labels: jnp.ndarray,
    counts: jnp.ndarray,
    beta: float = 0.9999,
    gamma: float = 2.5,
    weights: Optional[jnp.ndarray] = None,
) -> jnp.ndarray:
  """Class-balanced focal loss (Cui et al. 2019): ``softmax_focal_loss`` with alpha the
  effective-number weights ``class_balanced_alpha(counts, beta)`` (sum to C; beta -> 0 gives
  uniform alpha = 1, i.e. plain focal). Zero-weight rows are ignored, in value and gradient,
  even if their logits are inf/nan.

  Args:
    logits: [N, C] unnormalised scores.
    labels: [N] int class ids.
    counts: [C] training counts per class.
    beta: in [0, 1).
    gamma: focusing parameter >= 0.
    weights: [N] item weights / mask, or None.
  Returns:
    Scalar loss.
  """
  return softmax_focal_loss(_clean(logits, weights), labels,
                            alpha=class_balanced_alpha(counts, beta), gamma=gamma, weights=weights)


def balanced_weights(counts: jnp.ndarray) -> jnp.ndarray:
  """'Balanced' class weights a_c = n / (C * n_c), as sklearn's
  ``compute_class_weight('balanced')``: n the total count, n_c clamped to >= 1 (an absent class
  gets a singleton's weight n / C).

  Args:
    counts: [C] per-class sample counts.
  Returns:
    [C] float32 weights.
  """
  counts = jnp.asarray(counts, jnp.float32)
  return jnp.sum(counts) / (counts.shape[0] * jnp.maximum(counts, 1.0))


def balanced_cross_entropy(
    logits: jnp.ndarray,
    labels: jnp.ndarray,
    counts: jnp.ndarray,
    weights: Optional[jnp.ndarray] = None,
) -> jnp.ndarray:
  """Class-weighted cross-entropy with 'balanced' weights, normalised by the total weight.

  sum_i w_i a_{y_i} CE_i / max(sum_i w_i a_{y_i}, tiny), a = ``balanced_weights(counts)``;
  equals sklearn ``log_loss(y, softmax, sample_weight=a[y] * w)``. Zero-weight (padded) rows are
  ignored, in value and gradient, even if their logits are inf/nan.

  Args:
    logits: [N, C] unnormalised scores.
    labels: [N] int class ids.
    counts: [C] training counts per class.
    weights: [N] item weights / mask, or None.
  Returns:
    Scalar loss.
  """
  labels = jnp.asarray(labels, jnp.int32)
  a = balanced_weights(counts)[labels]  # [N], > 0
  w = a if weights is None else a * jnp.asarray(weights, jnp.float32)
  return softmax_focal_loss(_clean(logits, weights), labels, alpha=None, gamma=0.0, weights=w)


def supervised_contrastive_loss(
    z: jnp.ndarray,
    labels: jnp.ndarray,
    temperature: float = 0.1,
    weights: Optional[jnp.ndarray] = None,
) -> jnp.ndarray:
  """Supervised contrastive loss L_out (Khosla et al. 2020), one view per example.

  z is L2-normalised here; s_ia = z_i . z_a / temperature. For anchor i, the candidates are
  A(i) = {a != i : w_a > 0}, the positives P(i) = {p in A(i) : y_p = y_i}, and
    loss_i = -1/|P(i)| sum_{p in P(i)} (s_ip - log sum_{a in A(i)} exp(s_ia)).
  Anchors with w_i = 0 or no positive (the only example of its class in the batch) are
  excluded; the loss is the mean over the included anchors (0 when none). ``weights`` act as a
  mask (only w > 0 matters); masked rows may hold inf/nan. Stable: the diagonal and masked
  entries get a large finite negative, and each row's max is subtracted.

  Args:
    z: [N, D] embeddings (any norm).
    labels: [N] int class ids.
    temperature: softmax temperature > 0.
    weights: [N] item weights / mask, or None.
  Returns:
    Scalar loss.
  """
  z = jnp.asarray(z)
  dt = jnp.promote_types(z.dtype, jnp.float32)
  n = z.shape[0]
  keep = jnp.ones((n,), bool) if weights is None else jnp.asarray(weights) > 0
  z = jnp.where(keep[:, None], z.astype(dt), 0.0)  # garbage in masked rows cannot leak
  z = z * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(z), -1, keepdims=True), 1e-12))
  sim = (z @ z.T) / temperature  # [N(anchor), N(candidate)]
  cand = keep[None, :] & ~jnp.eye(n, dtype=bool)
  masked = jnp.where(cand, sim, jnp.asarray(-0.5 * jnp.finfo(dt).max, dt))
  m = jax.lax.stop_gradient(jnp.max(masked, axis=1, keepdims=True))
  log_denom = m + jnp.log(jnp.sum(jnp.exp(masked - m), axis=1, keepdims=True))  # sum >= 1
  log_prob = sim - log_denom
  labels = jnp.asarray(labels, jnp.int32)
  pos = cand & (labels[:, None] == labels[None, :])
  n_pos = jnp.sum(pos, axis=1)
  loss_i = -jnp.sum(jnp.where(pos, log_prob, 0.0), axis=1) / jnp.maximum(n_pos, 1)
  anchor = (keep & (n_pos > 0)).astype(dt)
  return jnp.sum(anchor * loss_i) / jnp.maximum(jnp.sum(anchor), 1.0)
