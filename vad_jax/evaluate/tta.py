"""Test-time augmentation: score a video and views of it (vad_jax.data.views), and average.

`config.eval_tta` lists the extra views, comma-separated, '+' composing transforms into one view
('' = none; e.g. 'hflip,shift,hflip+shift' is 4 views with the original). Predictions are
averaged as class probabilities: the clip score of the average is then 1 - mean p(Normal), the
same definition as without TTA. Views run as one vmapped call over a leading view axis (one
graph, V times the compute). Hand-written because no kept library ships video TTA for JAX.
"""

from typing import Callable

import jax
import jax.numpy as jnp

from vad_jax.data import views as views_lib


def parse(spec: str) -> tuple[tuple[str, ...], ...]:
  return views_lib.parse(spec, 'eval_tta', compose=True)


def average(stacked: dict[str, jnp.ndarray]) -> dict[str, jnp.ndarray]:
  """Outputs over V views (leading axis) -> their mean: 'logits' [V, ..., C] replaced by the log
  of the mean class probabilities, every other output (e.g. 'score') averaged."""
  out = {k: jnp.mean(v, axis=0) for k, v in stacked.items() if k != 'logits'}
  if 'logits' in stacked:
    out['logits'] = jnp.log(jnp.mean(jax.nn.softmax(stacked['logits'], axis=-1), axis=0))
  return out


def with_views(predict: Callable, views: tuple[tuple[str, ...], ...],
               field: str = 'video') -> Callable:
  """predict(variables, batch) -> the same, averaged over batch[field] and its `views` (the
  other fields are shared by every view)."""
  if not views:
    return predict

  def predict_tta(variables, batch):
    if field not in batch:
      raise ValueError(f'eval_tta transforms {field!r}; the batch has {sorted(batch)}')
    x = batch[field]
    stacked = jnp.stack([x] + [views_lib.apply(x, v) for v in views])   # [V, B, ...]
    run = lambda xv: predict(variables, dict(batch, **{field: xv}))
    return average(jax.vmap(run)(stacked))

  return predict_tta
