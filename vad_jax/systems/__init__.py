"""Systems by name (`config.system`): a model plus its losses and outputs, the unit the one
trainer runs. The contract is `vad_jax.systems.base.System`; a new system is its model, its
system file registered here, and its config."""

import importlib

from vad_jax.systems.base import System

_SYSTEMS = {
    'hybrid': 'vad_jax.systems.hybrid:HybridSystem',        # seed 000
    'hybrid_features': 'vad_jax.systems.hybrid:HybridFeaturesSystem',  # seed 000, no trunk
    'svdd_vae': 'vad_jax.systems.svdd_vae:SVDDVAESystem',   # seed 001
    'multihead': 'vad_jax.systems.multihead:MultiHeadSystem',  # seed 002
    'violence': 'vad_jax.systems.violence:ViolenceSystem',  # seed 003
    'detector': 'vad_jax.systems.detector:DetectorSystem',  # seed 004
}


def get(name: str) -> type[System]:
  """The system class registered as `name` (its module is imported on first use)."""
  if name not in _SYSTEMS:
    raise ValueError(f'config.system={name!r}: unknown system; known: {sorted(_SYSTEMS)}')
  module, cls = _SYSTEMS[name].split(':')
  return getattr(importlib.import_module(module), cls)
