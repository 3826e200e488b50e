"""Geometric views of a video or an image, shared by training augmentation (host, numpy) and
test-time augmentation (device, jax): one definition of each transform for both.

A video is [..., H, W, C] (one video [N, H, W, C], a batch [B, N, H, W, C], or images [B, H, W,
C]); every frame of a video gets the same transform, so motion is preserved. 'hflip' and
'shift' are label-preserving for a fixed surveillance camera:
  'hflip'  mirror left and right (people walk both ways).
  'vflip'  mirror top and bottom: puts the sky under the street, so the video systems do not use
           it (it cost the hybrid 0.012 test AUC); offered because seed 002's 4-way TTA
           (identity, h-flip, v-flip, both) is part of its recipe.
  'shift'  roll down and right by (dy, dx) pixels, default (1, 1): at 32x32 the trunk's stride-2
           stem samples every other pixel, so a 1-pixel shift shows it the other sampling phase.
           Rolling wraps one row and column around the border.
Hand-written because no kept library ships these transforms for video tensors.
"""

import jax
import jax.numpy as jnp
import numpy as np

def hflip(video):
  return video[..., ::-1, :]


def vflip(video):
  return video[..., ::-1, :, :]


def shift(video, dy: int = 1, dx: int = 1):
  xp = jnp if isinstance(video, jax.Array) else np
  return xp.roll(video, (dy, dx), axis=(-3, -2))


TRANSFORMS = {'hflip': hflip, 'vflip': vflip, 'shift': shift}   # name -> transform with its default arguments
NAMES = tuple(TRANSFORMS)


def parse(spec: str, key: str, compose: bool = False) -> tuple[tuple[str, ...], ...]:
  """'hflip,shift' -> (('hflip',), ('shift',)); with `compose`, 'hflip+shift' is one view made of
  both. '' -> (). Raises ValueError naming the config `key` and the unknown names."""
  views = tuple(tuple(n.strip() for n in v.split('+')) for v in spec.split(',') if v.strip())
  unknown = sorted({n for v in views for n in v if n not in NAMES})
  if unknown:
    raise ValueError(f'{key}: unknown view(s) {unknown}; known: {list(NAMES)}')
  if not compose and any(len(v) > 1 for v in views):
    raise ValueError(f"{key}={spec!r}: list views separated by ',' ('+' composes only in eval_tta)")
  return views


def apply(video, view: tuple[str, ...]):
  """The view made of the named transforms, applied left to right."""
  for name in view:
    video = TRANSFORMS[name](video)
  return video


def random_augment(names: tuple[str, ...], field: str = 'video'):
  """-> grain random map: {field [N, H, W, C] or [H, W, C], ...} -> the same with, per example,
  'hflip' and 'vflip' each applied with probability 1/2 and 'shift' by (dy, dx) drawn uniformly
  from {0, 1}^2."""
  def augment(example: dict, rng: np.random.Generator) -> dict:
    video = example[field]
    if 'hflip' in names and rng.random() < 0.5:
      video = hflip(video)
    if 'vflip' in names and rng.random() < 0.5:
      video = vflip(video)
    if 'shift' in names:
      dy, dx = rng.integers(0, 2, size=2)
      video = shift(video, int(dy), int(dx))
    return dict(example, **{field: np.ascontiguousarray(video)})
  return augment
