"""Train state and optimizer: AdamW, linear warmup + cosine decay, global-norm clipping, frozen
trunk stages (zero updates, no weight decay)."""

from typing import Any

import jax
import optax
from flax.training import train_state

from vad_jax.models import efficientnet


class TrainState(train_state.TrainState):
  """flax TrainState plus BatchNorm running statistics and, when `ema_decay` > 0, an exponential
  moving average of the parameters (what evaluation uses)."""
  batch_stats: Any = None
  ema_params: Any = None

  def eval_params(self):
    return self.params if self.ema_params is None else self.ema_params


def learning_rate(config) -> optax.Schedule:
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=config.lr, warmup_steps=config.warmup_steps,
      decay_steps=max(config.num_steps, config.warmup_steps + 1), end_value=config.lr * 0.01)


def optimizer(config, params) -> optax.GradientTransformation:
  """AdamW on trainable parameters (no decay on biases / norm scales); frozen trunk stages
  (`model.trunk.frozen_stages`) get zero updates."""
  trainable = jax.tree.map(lambda _: True, params)
  if 'trunk' in params:
    trainable['trunk'] = efficientnet.trainable_mask(params['trunk'],
                                                     config.model.trunk.frozen_stages)
  labels = jax.tree.map(lambda t: 'train' if t else 'frozen', trainable)
  decay = jax.tree.map(lambda p: p.ndim > 1, params)
  train = optax.chain(
      optax.clip_by_global_norm(config.grad_clip),
      optax.adamw(learning_rate(config), weight_decay=config.weight_decay, mask=decay))
  return optax.multi_transform({'train': train, 'frozen': optax.set_to_zero()}, labels)


def create(config, system, rng: jax.Array, sample_video) -> TrainState:
  """Initialise parameters from a sample video [B, N, H, W, 3] (shape only matters)."""
  variables = system.init(rng, sample_video)
  ema = variables['params'] if config.get('ema_decay', 0.0) > 0 else None
  return TrainState.create(apply_fn=None, params=variables['params'],
                           batch_stats=variables.get('batch_stats', {}), ema_params=ema,
                           tx=optimizer(config, variables['params']))
