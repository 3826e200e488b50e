"""VAE objective pieces."""

from __future__ import annotations

from typing import Optional, Tuple

import jax.numpy as jnp


def _wmean(x: jnp.ndarray, weights: Optional[jnp.ndarray]) -> jnp.ndarray:
  if weights is None:
    return jnp.mean(x)
  w = jnp.asarray(weights, x.dtype)
  return jnp.sum(w * x) / jnp.maximum(jnp.sum(w), jnp.finfo(x.dtype).tiny)


def vae_loss(
    recon: jnp.ndarray,
    x: jnp.ndarray,
    mu: jnp.ndarray,
    logvar: jnp.ndarray,
    beta: float = 0.01,
    weights: Optional[jnp.ndarray] = None,
) -> Tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """beta-VAE loss with Gaussian posterior and N(0, I) prior.

  recon_mse = wmean_items(mean_features((recon - x)**2))
  kl        = wmean_items(-0.5 * sum_latent(1 + logvar - mu**2 - exp(logvar)))
  total     = recon_mse + beta * kl
  where wmean is sum(w * v) / max(sum(w), tiny) (plain mean when weights is
  None), so zero-weight (padded) items are ignored in both terms.

  Args:
    recon, x: [N, ...] reconstruction and target.
    mu, logvar: [N, D] posterior mean and log-variance.
    beta: KL weight.
    weights: [N] item weights / mask, or None.
  Returns:
    (total, recon_mse, kl), scalars.
  """
  recon = jnp.asarray(recon)
  dt = jnp.promote_types(recon.dtype, jnp.float32)
  diff2 = jnp.square(recon.astype(dt) - jnp.asarray(x, dt))
  per_item_mse = jnp.mean(diff2.reshape(diff2.shape[0], -1), axis=1)
  mu = jnp.asarray(mu, dt)
  logvar = jnp.asarray(logvar, dt)
  per_item_kl = -0.5 * jnp.sum(
      (1.0 + logvar - jnp.square(mu) - jnp.exp(logvar)).reshape(mu.shape[0], -1), axis=1)
  recon_mse = _wmean(per_item_mse, weights)
  kl = _wmean(per_item_kl, weights)
  return recon_mse + beta * kl, recon_mse, kl
