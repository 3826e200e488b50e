"""Geometric views of a video, shared by training augmentation (host, numpy) and test-time
augmentation (device, jax): one definition of each transform for both.

A video is [..., H, W, C] (one video [N, H, W, C] or a batch [B, N, H, W, C]); every frame of a
video gets the same transform, so motion is preserved. Both views are label-preserving for a
fixed surveillance camera:
  'hflip'  mirror left and right (people walk both ways; a vertical flip would put the sky under
           the street, so it is not offered).
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


def shift(video, dy: int = 1, dx: int = 1):
  xp = jnp if isinstance(video, jax.Array) else np
  return xp.roll(video, (dy, dx), axis=(-3, -2))


TRANSFORMS = {'hflip': hflip, 'shift': shift}   # name -> transform with its default arguments
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


def random_augment(names: tuple[str, ...]):
  """-> grain random map: {'video' [N, H, W, C], ...} -> the same with, per video, 'hflip' applied
  with probability 1/2 and 'shift' by (dy, dx) drawn uniformly from {0, 1}^2."""
  def augment(example: dict, rng: np.random.Generator) -> dict:
    video = example['video']
    if 'hflip' in names and rng.random() < 0.5:
      video = hflip(video)
    if 'shift' in names:
      dy, dx = rng.integers(0, 2, size=2)
      video = shift(video, int(dy), int(dx))
    return dict(example, video=np.ascontiguousarray(video))
  return augment
