"""Prediction heads on the 512-d sequence feature (seed 000, section 2.4). x [N, D]."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


def reparameterize(rng: jax.Array, mu: jnp.ndarray, logvar: jnp.ndarray) -> jnp.ndarray:
  """Sample z = mu + exp(0.5 * logvar) * eps, eps ~ N(0, I). Shapes [N, D] -> [N, D]."""
  eps = jax.random.normal(rng, jnp.shape(mu), jnp.result_type(mu))
  return mu + jnp.exp(0.5 * logvar) * eps


class MLPHead(nn.Module):
  """Dense(hidden) -> LayerNorm -> ReLU -> Dropout -> Dense(out). Regression and classification."""
  hidden: int
  out: int
  dropout: float = 0.5
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = nn.Dense(self.hidden, **kw, name='fc1')(x)
    x = nn.relu(nn.LayerNorm(**kw, name='norm')(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.out, **kw, name='fc2')(x)


class VAEHead(nn.Module):
  """Feature VAE: D -> 256 -> 128 -> (mu, logvar) latent -> 128 -> 256 -> D.

  Returns (recon [N, D], mu [N, L], logvar [N, L]). Sampling uses the 'vae' rng in training;
  at evaluation z = mu (the deterministic reconstruction is the anomaly signal).
  """
  latent: int = 64
  hidden: tuple[int, int] = (256, 128)
  dropout: float = 0.3
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    drop = lambda y: nn.Dropout(self.dropout, deterministic=not train)(y)
    h = x
    for i, width in enumerate(self.hidden):
      h = drop(nn.relu(nn.Dense(width, **kw, name=f'enc{i}')(h)))
    mu = nn.Dense(self.latent, **kw, name='mu')(h)
    logvar = nn.Dense(self.latent, **kw, name='logvar')(h)
    z = reparameterize(self.make_rng('vae'), mu, logvar) if train else mu
    h = z
    for i, width in enumerate(reversed(self.hidden)):
      h = drop(nn.relu(nn.Dense(width, **kw, name=f'dec{i}')(h)))
    return nn.Dense(x.shape[-1], **kw, name='recon')(h), mu, logvar
