"""Start a model's EfficientNet trunk from a Keras weights file (`config.model.trunk.weights`)."""

import os

import jax
import numpy as np

from vad_jax.convert.keras import efficientnet_from_keras


def load_trunk(config, params: dict, batch_stats: dict) -> tuple[dict, dict]:
  """Returns (params, batch_stats) with 'trunk' replaced by the converted Keras weights.

  Raises FileNotFoundError / ValueError (nothing is changed) when the file is missing, the
  padding is not 'same' (Keras' convention), or its shapes do not match the configured trunk.
  """
  tr = config.model.trunk
  if not os.path.exists(tr.weights):
    raise FileNotFoundError(f'config.model.trunk.weights: no such file {tr.weights!r}')
  if tr.padding != 'same':
    raise ValueError("Keras EfficientNet weights need config.model.trunk.padding='same' "
                     f'(got {tr.padding!r})')
  new = efficientnet_from_keras(tr.weights, width_mult=tr.width_mult, depth_mult=tr.depth_mult)
  for name, ours, theirs in (('params', params['trunk'], new['params']),
                             ('batch_stats', batch_stats['trunk'], new['batch_stats'])):
    want = jax.tree.map(np.shape, ours)
    got = jax.tree.map(np.shape, theirs)
    if want != got:
      raise ValueError(f'{tr.weights}: trunk {name} do not match the configured trunk '
                       f'(width_mult={tr.width_mult}, depth_mult={tr.depth_mult})')
  cast = lambda ref, x: np.asarray(x, dtype=ref.dtype)
  return (dict(params, trunk=jax.tree.map(cast, params['trunk'], new['params'])),
          dict(batch_stats, trunk=jax.tree.map(cast, batch_stats['trunk'], new['batch_stats'])))
