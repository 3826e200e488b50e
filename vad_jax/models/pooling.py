"""Additive attention pooling over time (seed 001's BiLSTM summary).

  scores  s = Dense(1)(tanh(Dense(hidden)(x)))    [B, T]
  weights a = softmax_t(s), in float32            [B, T]  (masked steps get exactly 0)
  pooled  sum_t a[:, t] * x[:, t]                 [B, D]

Hand-written because flax ships dot-product attention only, not this learned-query pooling.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

__all__ = ['AttentionPooling']


class AttentionPooling(nn.Module):
  """x [B, T, D], optional mask bool [B, T] (False: step excluded) -> (pooled [B, D] in `dtype`,
  weights f32 [B, T]). Weights sum to 1 over the kept steps; a row with no kept step gets all-zero
  weights and a zero pooled vector. Parameters: `hidden` [D, hidden] (+bias), `score` [hidden, 1]
  (+bias)."""
  hidden: int = 128
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, mask: jnp.ndarray | None = None):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = x.astype(self.dtype)
    h = jnp.tanh(nn.Dense(self.hidden, **kw, name='hidden')(x))
    s = nn.Dense(1, **kw, name='score')(h)[..., 0].astype(jnp.float32)    # [B, T]
    if mask is None:
      w = jax.nn.softmax(s, axis=-1)
    else:
      mask = jnp.asarray(mask, bool)
      # finfo.min, not -inf: a fully masked row stays finite (uniform), then the mask zeroes it.
      s = jnp.where(mask, s, jnp.finfo(jnp.float32).min)
      w = jax.nn.softmax(s, axis=-1) * mask
    pooled = jnp.einsum('bt,btd->bd', w.astype(self.dtype), x)
    return pooled, w
