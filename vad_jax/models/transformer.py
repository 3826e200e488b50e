"""Transformer encoder with relative-position attention bias (seed 000, section 2.3).

The seed adds a sinusoidal encoding of the offset i - j to the attention logits. A logit is a
scalar per head, so the encoding of the offset is projected to one scalar per head by a learned
linear map: ``bias[h, i, j] = w_h . sinusoid(i - j)``. It depends only on the offset, so it is
translation invariant and defined for any clip length (no table, no clipping).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

Dtype = Any


def sinusoid(offsets: jnp.ndarray, dim: int) -> jnp.ndarray:
  """Sinusoidal encoding of integer offsets. offsets [...] -> [..., dim] (sin, cos interleaved)."""
  half = dim // 2
  inv_freq = jnp.exp(-jnp.log(10000.0) * jnp.arange(half, dtype=jnp.float32) * 2.0 / dim)
  angle = offsets.astype(jnp.float32)[..., None] * inv_freq
  return jnp.stack([jnp.sin(angle), jnp.cos(angle)], axis=-1).reshape(*offsets.shape, 2 * half)


class RelativePositionBias(nn.Module):
  """Per-head attention-logit bias that is a function of i - j only. -> [heads, T, T]."""
  num_heads: int
  encoding_dim: int = 64
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, length: int) -> jnp.ndarray:
    pos = jnp.arange(length)
    offsets = pos[:, None] - pos[None, :]                        # [T, T]
    enc = sinusoid(offsets, self.encoding_dim)                    # [T, T, E]
    bias = nn.Dense(self.num_heads, use_bias=False, dtype=self.dtype,
                    param_dtype=self.param_dtype, name='proj')(enc)  # [T, T, H]
    return jnp.transpose(bias, (2, 0, 1))


class RelativeSelfAttention(nn.Module):
  """Multi-head self-attention whose logits get a relative-position bias. x [B,T,D] -> [B,T,D]."""
  num_heads: int
  dropout: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    d = x.shape[-1]
    if d % self.num_heads:
      raise ValueError(f'width {d} is not divisible by num_heads={self.num_heads}')
    dense = lambda name: nn.DenseGeneral((self.num_heads, d // self.num_heads), dtype=self.dtype,
                                         param_dtype=self.param_dtype, name=name)
    q, k, v = dense('query')(x), dense('key')(x), dense('value')(x)   # [B, T, H, Dh]
    bias = RelativePositionBias(self.num_heads, dtype=self.dtype, param_dtype=self.param_dtype,
                                name='rel_bias')(x.shape[-2])
    out = nn.dot_product_attention(
        q, k, v, bias=bias[None].astype(q.dtype), dropout_rate=self.dropout,
        deterministic=not train, dropout_rng=self.make_rng('dropout') if train and self.dropout else None,
        dtype=self.dtype)
    return nn.DenseGeneral(d, axis=(-2, -1), dtype=self.dtype, param_dtype=self.param_dtype,
                           name='out')(out)


class EncoderLayer(nn.Module):
  """Post-norm Transformer layer: x = LN(x + Drop(Attn(x))); x = LN(x + Drop(FFN(x)))."""
  num_heads: int
  ff_dim: int
  dropout: float = 0.3
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    drop = lambda y: nn.Dropout(self.dropout, deterministic=not train)(y)
    y = RelativeSelfAttention(self.num_heads, self.dropout, **kw, name='attn')(x, train=train)
    x = nn.LayerNorm(**kw, name='norm1')(x + drop(y))
    y = nn.Dense(self.ff_dim, **kw, name='ff1')(x)
    y = nn.Dense(x.shape[-1], **kw, name='ff2')(drop(nn.relu(y)))
    return nn.LayerNorm(**kw, name='norm2')(x + drop(y))


class RelativeTransformer(nn.Module):
  """Stack of `num_layers` EncoderLayers. x [B,T,D] -> [B,T,D]."""
  num_layers: int = 2
  num_heads: int = 8
  ff_dim: int = 1024
  dropout: float = 0.3
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    for i in range(self.num_layers):
      x = EncoderLayer(self.num_heads, self.ff_dim, self.dropout, self.dtype, self.param_dtype,
                       name=f'layer{i}')(x, train=train)
    return x
