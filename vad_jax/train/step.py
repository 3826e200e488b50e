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

from vad_jax.evaluate import tta
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


def make_predict_step(system, mesh, tta_views: tuple[tuple[str, ...], ...] = ()) -> Callable:
  """-> predict(state, video) -> {'score': [B, K], 'logits': [B, K, C]} sharded over 'data',
  averaged over the video and its `tta_views` (vad_jax.evaluate.tta)."""
  system_predict = tta.with_views(system.predict, tta_views)

  def predict(state: TrainState, video):
    return system_predict({'params': state.eval_params(), 'batch_stats': state.batch_stats}, video)

  rep, data = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
  return jax.jit(predict, in_shardings=(rep, data), out_shardings=data)


def init_state(config, system, mesh, video_shape: tuple[int, ...]) -> TrainState:
  """Parameters initialised under jit straight into their (replicated) sharding."""
  init = lambda rng: state_lib.create(config, system, rng, jnp.zeros(video_shape, jnp.uint8))
  # It runs once, so on CPU it is compiled without backend optimisation: one random draw per
  # parameter makes a graph XLA:CPU takes ~23 s to optimise and 13 s not to. The values agree
  # with the optimised build's to 1 ulp (2e-7), and every CPU run uses this same build.
  options = {'xla_backend_optimization_level': 0} if jax.default_backend() == 'cpu' else None
  return jax.jit(init, out_shardings=mesh_lib.replicated(mesh),
                 compiler_options=options)(jax.random.key(config.seed))
