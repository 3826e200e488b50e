"""Seed 004's grid detection loss (YOLO-style, one class), summed over cells, mean over images.

  pred  (px, py, pw, ph) = sigmoid of the first four head outputs, objectness logit o
  L_xy    = sum_obj [(px - tx)^2 + (py - ty)^2]                  object cells only
  L_wh    = sum_obj [(pw^2 - tw^2)^2 + (ph^2 - th^2)^2]          the seed's "MSE on squared sizes"
  L_obj   = sum_obj BCE(sigmoid(o), 1)
  L_noobj = sum_noobj BCE(sigmoid(o), 0)
  loss    = lambda_coord * (L_xy + L_wh) + L_obj + lambda_noobj * L_noobj    (/ batch size)

BCE is taken on the logit (optax, stable), equal to BCE on the sigmoid probability. Targets come
from `vad_jax.boxes.grid.cell_targets`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

__all__ = ['grid_loss']


def grid_loss(logits: jnp.ndarray, targets: dict, lambda_coord: float = 5.0,
              lambda_noobj: float = 0.5) -> tuple[jnp.ndarray, dict]:
  """logits float [B, Sy, Sx, 5] (pre-sigmoid head outputs); targets {'obj' [B, Sy, Sx],
  'txty', 'twth' [B, Sy, Sx, 2]} -> (loss, {'xy', 'wh', 'obj', 'noobj'} per-image means)."""
  logits = logits.astype(jnp.float32)
  obj = targets['obj']
  p = jax.nn.sigmoid(logits[..., :4])
  l_xy = jnp.sum(obj[..., None] * (p[..., :2] - targets['txty']) ** 2, axis=(1, 2, 3))
  l_wh = jnp.sum(obj[..., None] * (p[..., 2:] ** 2 - targets['twth'] ** 2) ** 2, axis=(1, 2, 3))
  bce = optax.losses.sigmoid_binary_cross_entropy(logits[..., 4], obj)
  l_obj = jnp.sum(obj * bce, axis=(1, 2))
  l_noobj = jnp.sum((1.0 - obj) * bce, axis=(1, 2))
  per_image = lambda_coord * (l_xy + l_wh) + l_obj + lambda_noobj * l_noobj
  parts = {'xy': jnp.mean(l_xy), 'wh': jnp.mean(l_wh), 'obj': jnp.mean(l_obj),
           'noobj': jnp.mean(l_noobj)}
  return jnp.mean(per_image), parts
