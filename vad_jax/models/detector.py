"""Seed 004's YOLO-style single-class person detector, NHWC.

  image uint8 [B, H, W, 3] -> / 255
  9 x (Conv 3x3, no bias -> BatchNorm -> LeakyReLU 0.1)
      channels 16, 32, 64, 64, 128, 128, 256, 256, 512 (x width_mult), strides 2,1,2,1,2,1,2,1,1,
      padding 1 (PyTorch's: H / 16 exactly for H divisible by 16)          -> [B, H/16, W/16, C]
  head Conv 1x1 -> 5 (with bias)                                            -> [B, Sy, Sx, 5]
  (bilinear resize to `grid` x `grid` when set and different: the seed's head resizes to 26)

Returns the head's LOGITS (tx, ty, tw, th, objectness before the sigmoid): the loss takes BCE on
the objectness logit and `vad_jax.boxes.grid.decode` reads sigmoid(logits). When a resize is
needed it is applied to the logits (the seed resizes after the sigmoid; at S = H / 16, the
default, there is no resize and the two agree). Parameters at width 1: 2.35 M (the seed's text
says ~6.8 M; its own layer table gives 2.35 M). BatchNorm momentum 0.9 / eps 1e-5 are PyTorch's.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

__all__ = ['GridDetector', 'CHANNELS', 'STRIDES', 'from_config']

CHANNELS = (16, 32, 64, 64, 128, 128, 256, 256, 512)
STRIDES = (2, 1, 2, 1, 2, 1, 2, 1, 1)


class GridDetector(nn.Module):
  """images [B, H, W, 3] (uint8 or float in [0, 255]) -> logits float32 [B, Sy, Sx, 5]."""
  width_mult: float = 1.0
  grid: int = 0                  # 0: S follows the input (H / 16); else resize to grid x grid
  bn_momentum: float = 0.9
  negative_slope: float = 0.1
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = images.astype(self.dtype) / 255.0
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    for k, (c, s) in enumerate(zip(CHANNELS, STRIDES)):
      x = nn.Conv(max(1, round(c * self.width_mult)), (3, 3), (s, s), padding=((1, 1), (1, 1)),
                  use_bias=False, name=f'conv{k + 1}', **kw)(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-5,
                       name=f'bn{k + 1}', **kw)(x)
      x = nn.leaky_relu(x, self.negative_slope)
    x = nn.Conv(5, (1, 1), name='head', **kw)(x).astype(jnp.float32)
    if self.grid and x.shape[1:3] != (self.grid, self.grid):
      x = jax.image.resize(x, (x.shape[0], self.grid, self.grid, 5), 'bilinear')
    return x


def from_config(model_config, dtype, param_dtype) -> GridDetector:
  m = model_config
  return GridDetector(width_mult=m.width_mult, grid=m.grid, bn_momentum=m.bn_momentum,
                      dtype=dtype, param_dtype=param_dtype)
