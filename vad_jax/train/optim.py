"""The optimizer from `config.optim`: one optax chain for every system.

  clip_by_global_norm(grad_clip)                         (grad_clip > 0)
  add_decayed_weights(2 * l2, params matching l2_params)  Keras-style L2 on kernels: the gradient
                                                          of l2 * sum(w^2), added before Adam
  scale_by_adam | scale_by_sgd                           name: adamw / adam / sgd
  add_decayed_weights(weight_decay, ndim > 1)            decoupled decay (adamw only)
  scale_by_lr(schedule) x lr_multiplier                  warmup_cosine / constant / reduce_on_plateau;
                                                         the multiplier is optimizer state that
                                                         monitors change without recompiling
Parameters whose path 'a/b/c' matches a regex of the system's `frozen_params()` get
`optax.set_to_zero()` (no update, no decay). With schedule 'reduce_on_plateau' the step passes
the training loss as `value` (`optax.contrib.reduce_on_plateau`).

With `sam_rho` > 0 the whole chain is the outer optimizer of `optax.contrib.sam` in opaque mode
(Foret et al. 2021): the step passes `grad_fn`, SAM moves to w + rho * g / ||g|| (normalised
ascent, `optax.contrib.normalize` + sgd(rho)), evaluates the gradient there and hands THAT to the
chain above; both gradient evaluations happen inside the one jitted step.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

NAMES = ('adamw', 'adam', 'sgd')
SCHEDULES = ('warmup_cosine', 'constant', 'reduce_on_plateau')
MULTIPLIER = 'lr_multiplier'


def check(optim) -> None:
  """One-line ValueErrors for bad `config.optim` values (before anything is built)."""
  if optim.name not in NAMES:
    raise ValueError(f'optim.name={optim.name!r}; expected one of {list(NAMES)}')
  if optim.schedule not in SCHEDULES:
    raise ValueError(f'optim.schedule={optim.schedule!r}; expected one of {list(SCHEDULES)}')
  if optim.lr <= 0:
    raise ValueError(f'optim.lr={optim.lr} must be > 0')
  for key in ('weight_decay', 'l2', 'grad_clip', 'warmup_steps'):
    if optim[key] < 0:
      raise ValueError(f'optim.{key}={optim[key]} must be >= 0')
  if optim.get('sam_rho', 0.0) < 0:
    raise ValueError(f'optim.sam_rho={optim.sam_rho} must be >= 0 (0 = off)')
  if optim.get('sam_rho', 0.0) and optim.schedule == 'reduce_on_plateau':
    raise ValueError("optim.sam_rho > 0 with optim.schedule='reduce_on_plateau': SAM's outer "
                     'update receives no loss value; use warmup_cosine or constant')
  if optim.weight_decay and optim.name != 'adamw':
    raise ValueError(f'optim.weight_decay={optim.weight_decay} is decoupled decay (adamw); '
                     f'with {optim.name!r} use optim.l2')
  re.compile(optim.l2_params)


def path_of(key_path) -> str:
  """jax key path -> 'a/b/c'."""
  return '/'.join(str(getattr(k, 'key', getattr(k, 'name', k))) for k in key_path)


def matches(params, patterns) -> dict:
  """Bool tree: True where the parameter's path matches any regex in `patterns`."""
  compiled = [re.compile(p) for p in patterns]
  return jax.tree_util.tree_map_with_path(
      lambda kp, _: any(c.search(path_of(kp)) for c in compiled), params)


def schedule(optim, num_steps: int) -> optax.Schedule:
  if optim.schedule == 'warmup_cosine':
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=optim.lr, warmup_steps=optim.warmup_steps,
        decay_steps=max(num_steps, optim.warmup_steps + 1), end_value=optim.lr * optim.end_lr_fraction)
  if optim.warmup_steps:
    return optax.linear_schedule(0.0, optim.lr, optim.warmup_steps)
  return optax.constant_schedule(optim.lr)


def make(optim, params, frozen: tuple[str, ...], num_steps: int) -> optax.GradientTransformation:
  """The optimizer for `params` (a tree of arrays or shapes)."""
  parts = []
  if optim.grad_clip > 0:
    parts.append(optax.clip_by_global_norm(optim.grad_clip))
  if optim.l2 > 0:
    parts.append(optax.add_decayed_weights(2.0 * optim.l2, mask=matches(params, [optim.l2_params])))
  if optim.name in ('adamw', 'adam'):
    parts.append(optax.scale_by_adam(b1=optim.b1, b2=optim.b2, eps=optim.eps))
  else:
    parts.append(optax.trace(decay=optim.momentum) if optim.momentum else optax.identity())
  if optim.name == 'adamw' and optim.weight_decay > 0:
    parts.append(optax.add_decayed_weights(
        optim.weight_decay, mask=jax.tree.map(lambda p: len(p.shape) > 1, params)))
  parts.append(scale_by_lr(schedule(optim, num_steps)))
  if optim.schedule == 'reduce_on_plateau':
    p = optim.plateau
    parts.append(optax.contrib.reduce_on_plateau(
        factor=p.factor, patience=p.patience, cooldown=p.cooldown, rtol=p.rtol,
        accumulation_size=p.accumulation_size))
  tx = optax.chain(*parts)
  if frozen:
    labels = jax.tree.map(lambda f: 'frozen' if f else 'train', matches(params, frozen))
    tx = optax.multi_transform({'train': tx, 'frozen': optax.set_to_zero()}, labels)
  if optim.get('sam_rho', 0.0) > 0:
    adversary = optax.chain(optax.contrib.normalize(), optax.sgd(optim.sam_rho))
    tx = optax.contrib.sam(tx, adversary, sync_period=2, opaque_mode=True)
  return tx


def uses_sam(optim) -> bool:
  """Whether the step must pass `grad_fn` (a second gradient evaluation) to the optimizer."""
  return optim.get('sam_rho', 0.0) > 0


class ScaleByLrState(NamedTuple):
  count: jnp.ndarray
  lr_multiplier: jnp.ndarray


def scale_by_lr(sched: optax.Schedule) -> optax.GradientTransformation:
  """updates * -(sched(count) * lr_multiplier), the multiplier a state entry monitors change.

  Hand-written because optax's inject_hyperparams would scale the updates a second time (an
  extra rounding: runs would not be bit-identical to plain `scale_by_learning_rate` at x1.0);
  here the scalar is formed first, so at x1.0 the update is exactly the plain one.
  """
  def init(params):
    del params
    return ScaleByLrState(jnp.zeros([], jnp.int32), jnp.ones([], jnp.float32))

  def update(updates, state, params=None):
    del params
    step_size = -1 * (sched(state.count) * state.lr_multiplier)
    updates = jax.tree.map(lambda u: jnp.array(step_size, dtype=u.dtype) * u, updates)
    return updates, ScaleByLrState(optax.safe_increment(state.count), state.lr_multiplier)

  return optax.GradientTransformation(init, update)


def lr_multiplier(opt_state) -> jnp.ndarray:
  """The current learning-rate multiplier held in the optimizer state."""
  return optax.tree_utils.tree_get(opt_state, MULTIPLIER)


def scale_lr(opt_state, factor: float):
  """The optimizer state with the learning-rate multiplier times `factor` (same dtype and
  sharding, so the jitted step is not recompiled)."""
  old = lr_multiplier(opt_state)
  new = jax.device_put(jnp.asarray(old * factor, old.dtype), old.sharding)
  return optax.tree_utils.tree_set(opt_state, **{MULTIPLIER: new})
