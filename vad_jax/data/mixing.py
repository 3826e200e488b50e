"""Batch mixup / CutMix on device, inside the jitted train step, driven by the step's RNG.

Per batch (as timm's ``Mixup``, mode 'batch'): with probability ``prob`` the batch is mixed at
all (else lam = 1, the identity); when both alphas are > 0 CutMix is chosen with probability
``switch_prob``, else the method whose alpha is > 0. One lam ~ Beta(alpha, alpha) and one
permutation of the batch (the partner of row i is row perm[i]; timm flips the batch instead).
CutMix cuts timm's ``rand_bbox``: side ratio sqrt(1 - lam), uniform centre, clipped to the
image, and lam corrected to the area kept, 1 - box area / (H * W). A video gets the same box on
every frame. Static shapes throughout: the box is a boolean [H, W] mask made by iota
comparisons; only the shapes must be python values.

Systems combine the per-example losses of the two labels with ``mixed(loss(label),
loss(label_b), lam)``.

Hand-written because no kept library ships batch mixup / CutMix for JAX arrays.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp


class MixParams(NamedTuple):
  """One batch's mixing: lam float32 [] (share of the row itself), perm int32 [B] (its
  partner), mask bool [H, W] (the CutMix box: pixels taken from the partner; all False for
  mixup), is_cutmix bool []."""
  lam: jax.Array
  perm: jax.Array
  mask: jax.Array
  is_cutmix: jax.Array


def identity(batch: int, height: int, width: int) -> MixParams:
  """No mixing: lam 1, perm the identity, an empty box."""
  return MixParams(lam=jnp.ones((), jnp.float32), perm=jnp.arange(batch, dtype=jnp.int32),
                   mask=jnp.zeros((height, width), bool), is_cutmix=jnp.zeros((), bool))


def _box(rng, lam, height: int, width: int) -> jax.Array:
  """timm's rand_bbox as a [H, W] mask: cut (int(H r), int(W r)), r = sqrt(1 - lam), centre
  uniform over the pixels, rows [cy - cut_h // 2, cy + cut_h // 2) clipped (columns alike)."""
  k_y, k_x = jax.random.split(rng)
  ratio = jnp.sqrt(jnp.clip(1.0 - lam, 0.0, 1.0))
  cut_h = jnp.floor(height * ratio).astype(jnp.int32)
  cut_w = jnp.floor(width * ratio).astype(jnp.int32)
  cy = jax.random.randint(k_y, (), 0, height)
  cx = jax.random.randint(k_x, (), 0, width)
  yl, yh = jnp.clip(cy - cut_h // 2, 0, height), jnp.clip(cy + cut_h // 2, 0, height)
  xl, xh = jnp.clip(cx - cut_w // 2, 0, width), jnp.clip(cx + cut_w // 2, 0, width)
  iy = jax.lax.broadcasted_iota(jnp.int32, (height, width), 0)
  ix = jax.lax.broadcasted_iota(jnp.int32, (height, width), 1)
  return (iy >= yl) & (iy < yh) & (ix >= xl) & (ix < xh)


def sample(rng: jax.Array, batch: int, height: int, width: int, mixup_alpha: float,
           cutmix_alpha: float, switch_prob: float = 0.5, prob: float = 1.0) -> MixParams:
  """Draws one batch's ``MixParams`` (see the module docstring). An alpha <= 0 disables its
  method; python alphas both <= 0 return ``identity`` without drawing anything. The alphas and
  probabilities may be traced (one compiled step for any values). A batch left unmixed gets
  the identity perm, so its label_b is its label."""
  if (isinstance(mixup_alpha, (int, float)) and isinstance(cutmix_alpha, (int, float))
      and mixup_alpha <= 0 and cutmix_alpha <= 0):
    return identity(batch, height, width)
  k_u, k_lam, k_perm, k_box = jax.random.split(rng, 4)
  u_prob, u_switch = jax.random.uniform(k_u, (2,))
  mixup_alpha = jnp.asarray(mixup_alpha, jnp.float32)
  cutmix_alpha = jnp.asarray(cutmix_alpha, jnp.float32)
  mix_on, cut_on = mixup_alpha > 0, cutmix_alpha > 0
  use_cut = jnp.where(mix_on & cut_on, u_switch < switch_prob, cut_on)
  do_mix = (mix_on | cut_on) & (u_prob < prob)
  alpha = jnp.where(use_cut, cutmix_alpha, mixup_alpha)
  alpha = jnp.where(alpha > 0, alpha, 1.0)  # a disabled draw stays finite (and is discarded)
  lam = jax.random.beta(k_lam, alpha, alpha, dtype=jnp.float32)
  is_cutmix = do_mix & use_cut
  mask = _box(k_box, lam, height, width) & is_cutmix
  area = jnp.sum(mask, dtype=jnp.int32).astype(jnp.float32)
  lam = jnp.where(is_cutmix, 1.0 - area / float(height * width), lam)
  lam = jnp.where(do_mix, lam, 1.0).astype(jnp.float32)
  perm = jnp.where(do_mix, jax.random.permutation(k_perm, batch).astype(jnp.int32),
                   jnp.arange(batch, dtype=jnp.int32))
  return MixParams(lam=lam, perm=perm, mask=mask, is_cutmix=is_cutmix)


def apply(x: jax.Array, params: MixParams) -> jax.Array:
  """Mixes a batch: mixup lam * x + (1 - lam) * x[perm]; CutMix x with the box taken from
  x[perm] (the same box on every frame).

  Args:
    x: [B, ..., H, W, C] images [B, H, W, C] or videos [B, N, H, W, C], uint8 or float.
    params: from ``sample`` with this B, H, W.
  Returns:
    float32 array of x's shape.
  """
  x = jnp.asarray(x)
  if x.ndim < 4 or x.shape[-3:-1] != params.mask.shape or x.shape[0] != params.perm.shape[0]:
    raise ValueError(f'mixing: x {x.shape} is not [B, ..., H, W, C] for B = '
                     f'{params.perm.shape[0]}, (H, W) = {params.mask.shape}')
  x = x.astype(jnp.float32)
  partner = jnp.take(x, params.perm, axis=0)
  cut = jnp.where(params.mask[:, :, None], partner, x)
  lam = params.lam.astype(jnp.float32)
  return jnp.where(params.is_cutmix, cut, lam * x + (1.0 - lam) * partner)


def mix_batch(batch: Mapping[str, Any], rng: jax.Array, field: str, cfg: Mapping[str, Any]) -> dict:
  """Mixes ``batch[field]`` ([B, ..., H, W, C]) as ``cfg`` says (keys mixup_alpha,
  cutmix_alpha, switch_prob, prob; e.g. ``config.mixup``).

  Returns:
    A new dict: the batch with ``field`` mixed (float32), plus 'label_b' int32 [B] (the
    partner's label, label[perm]) and 'mix_lam' float32 [B] (lam repeated per row, so the field
    shards over the batch like the others).
  """
  x = batch[field]
  b, h, w = x.shape[0], x.shape[-3], x.shape[-2]
  params = sample(rng, b, h, w, cfg['mixup_alpha'], cfg['cutmix_alpha'], cfg['switch_prob'],
                  cfg['prob'])
  out = dict(batch)
  out[field] = apply(x, params)
  out['label_b'] = jnp.take(jnp.asarray(batch['label'], jnp.int32), params.perm, axis=0)
  out['mix_lam'] = jnp.full((b,), params.lam, jnp.float32)
  return out


def mixed(per_example_loss_a: jax.Array, per_example_loss_b: jax.Array, lam) -> jax.Array:
  """lam * a + (1 - lam) * b: the mixed per-example loss of the two labels."""
  return lam * per_example_loss_a + (1.0 - lam) * per_example_loss_b
