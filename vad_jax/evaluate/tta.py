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
  """{'score' [V, B, K], 'logits' [V, B, K, C]} over V views -> mean: scores averaged, logits
  replaced by the log of the mean class probabilities."""
  probs = jnp.mean(jax.nn.softmax(stacked['logits'], axis=-1), axis=0)
  return {'score': jnp.mean(stacked['score'], axis=0), 'logits': jnp.log(probs)}


def with_views(predict: Callable, views: tuple[tuple[str, ...], ...]) -> Callable:
  """predict(variables, video) -> the same, averaged over the video and its `views`."""
  if not views:
    return predict

  def predict_tta(variables, video):
    stacked = jnp.stack([video] + [views_lib.apply(video, v) for v in views])   # [V, B, ...]
    return average(jax.vmap(predict, in_axes=(None, 0))(variables, stacked))

  return predict_tta
