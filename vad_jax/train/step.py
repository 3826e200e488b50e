"""The one jitted, sharded train step and the evaluation step.

State is replicated and donated; the batch is sharded over the mesh's 'data' axis; the dropout
RNG is folded from the step counter, so a run restored at step s draws exactly the randomness an
uninterrupted run would. BatchNorm statistics are computed over the global batch (XLA inserts the
cross-device reductions), so 1 device and 8 devices take the same step.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from vad_jax.train import mesh as mesh_lib
from vad_jax.train import state as state_lib
from vad_jax.train.state import TrainState


def make_train_step(system, mesh, seed: int, lr_schedule: optax.Schedule,
                    ema_decay: float) -> Callable:
  """-> step(state, batch) -> (state, metrics); batch = {'video', 'label'} global arrays.
  With `state.ema_params` set, they move to ema_decay * ema + (1 - ema_decay) * new params."""
  base_rng = jax.random.key(seed)

  def step(state: TrainState, batch):
    rng = jax.random.fold_in(base_rng, state.step)
    grad_fn = jax.value_and_grad(system.loss, has_aux=True)
    (_, (metrics, batch_stats)), grads = grad_fn(state.params, state.batch_stats, batch, rng)
    metrics = dict(metrics, grad_norm=optax.tree.norm(grads), lr=lr_schedule(state.step))
    new = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    if state.ema_params is not None:
      new = new.replace(ema_params=optax.incremental_update(new.params, state.ema_params,
                                                            step_size=1.0 - ema_decay))
    return new, metrics

  rep, data = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
  return jax.jit(step, in_shardings=(rep, data), out_shardings=(rep, rep), donate_argnums=(0,))


def make_predict_step(system, mesh) -> Callable:
  """-> predict(state, video) -> {'score': [B, K], 'logits': [B, K, C]} sharded over 'data'."""

  def predict(state: TrainState, video):
    return system.predict({'params': state.eval_params(), 'batch_stats': state.batch_stats}, video)

  rep, data = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
  return jax.jit(predict, in_shardings=(rep, data), out_shardings=data)


def init_state(config, system, mesh, video_shape: tuple[int, ...]) -> TrainState:
  """Parameters initialised under jit straight into their (replicated) sharding."""
  init = lambda rng: state_lib.create(config, system, rng, jnp.zeros(video_shape, jnp.uint8))
  return jax.jit(init, out_shardings=mesh_lib.replicated(mesh))(jax.random.key(config.seed))
