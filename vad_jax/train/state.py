"""Train state and optimizer: AdamW, linear warmup + cosine decay, global-norm clipping, frozen
trunk stages (zero updates, no weight decay)."""

from typing import Any

import flax
import jax
import optax
from flax.training import train_state


class TrainState(train_state.TrainState):
  """flax TrainState plus BatchNorm running statistics."""
  batch_stats: Any = None


def learning_rate(config) -> optax.Schedule:
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=config.lr, warmup_steps=config.warmup_steps,
      decay_steps=max(config.num_steps, config.warmup_steps + 1), end_value=config.lr * 0.01)


def frozen_prefixes(config) -> tuple[tuple[str, ...], ...]:
  """Parameter path prefixes frozen by `model.trunk.frozen_stages` (N: stem + stages 0..N-1)."""
  n = config.model.trunk.frozen_stages
  if n <= 0:
    return ()
  return (('trunk', 'stem'),) + tuple(('trunk', f'stage{i}') for i in range(n))


def optimizer(config, params) -> optax.GradientTransformation:
  frozen = frozen_prefixes(config)
  flat = flax.traverse_util.flatten_dict(params)
  is_frozen = lambda path: any(path[:len(p)] == p for p in frozen)
  labels = flax.traverse_util.unflatten_dict(
      {k: 'frozen' if is_frozen(k) else 'train' for k in flat})
  decay = flax.traverse_util.unflatten_dict({k: v.ndim > 1 for k, v in flat.items()})
  train = optax.chain(
      optax.clip_by_global_norm(config.grad_clip),
      optax.adamw(learning_rate(config), weight_decay=config.weight_decay, mask=decay))
  return optax.multi_transform({'train': train, 'frozen': optax.set_to_zero()}, labels)


def create(config, system, rng: jax.Array, sample_video) -> TrainState:
  """Initialise parameters from a sample video [B, N, H, W, 3] (shape only matters)."""
  variables = system.init(rng, sample_video)
  return TrainState.create(apply_fn=None, params=variables['params'],
                           batch_stats=variables.get('batch_stats', {}),
                           tx=optimizer(config, variables['params']))
