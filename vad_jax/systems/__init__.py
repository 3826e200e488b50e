"""Systems: a model plus its losses and its anomaly score, the unit the shared trainer runs.

A system class provides
  from_config(config, class_counts) -> system
  train_frames(config) -> int  frames of one training video (the data layer renders this many)
and a system
  model                        the Flax module
  init(rng, video) -> variables
  loss(params, batch_stats, batch, rng) -> (loss, (metrics, new_batch_stats))
  predict(variables, video) -> {'score': [B, K], 'logits': [B, K, C]}
Configs name their system with `config.system`.
"""

from vad_jax.systems import hybrid

_SYSTEMS = {'hybrid': hybrid.HybridSystem}


def get(name: str):
  """The system class registered as `name`."""
  if name not in _SYSTEMS:
    raise ValueError(f'unknown system {name!r}; known: {sorted(_SYSTEMS)}')
  return _SYSTEMS[name]
