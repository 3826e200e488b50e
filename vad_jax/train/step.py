"""The one jitted, sharded train step and the prediction step, for any System.

State is replicated and donated; the batch is sharded over the mesh's 'data' axis; the step's
RNG is folded from the step counter, so a run restored at step s draws exactly the randomness an
uninterrupted run would. BatchNorm statistics are computed over the global batch (XLA inserts the
cross-device reductions), so 1 device and 8 devices take the same step.
"""

from typing import Callable

import jax
import optax

from vad_jax import mesh as mesh_lib
from vad_jax.evaluate import tta
from vad_jax.train import optim, state as state_lib
from vad_jax.train.state import TrainState


def make_train_step(system, mesh, seed: int, lr_schedule: optax.Schedule,
                    ema_decay: float) -> Callable:
  """-> step(state, batch) -> (state, metrics); batch = {field: global array} of
  `system.train_fields`. With `state.ema` kept, it moves to
  ema_decay * ema + (1 - ema_decay) * (new params and model state)."""
  base_rng = jax.random.key(seed)

  def step(state: TrainState, batch):
    rng = jax.random.fold_in(base_rng, state.step)

    def loss_fn(params):
      return system.loss({'params': params, **state.model_state}, batch, rng)

    (loss, (metrics, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    opt_updates, opt_state = state.tx.update(grads, state.opt_state, state.params, value=loss)
    params = optax.apply_updates(state.params, opt_updates)
    model_state = dict(state.model_state, **updates)
    ema = state.ema
    if ema is not None:
      ema = optax.incremental_update({'params': params, 'model_state': model_state}, ema,
                                     step_size=1.0 - ema_decay)
    lr = lr_schedule(state.step) * optim.lr_multiplier(opt_state)
    metrics = dict(metrics, grad_norm=optax.tree.norm(grads), lr=lr)
    return state.replace(step=state.step + 1, params=params, model_state=model_state,
                         opt_state=opt_state, ema=ema), metrics

  rep, data = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
  return jax.jit(step, in_shardings=(rep, data), out_shardings=(rep, rep), donate_argnums=(0,))


def make_predict_step(system, mesh, tta_views: tuple[tuple[str, ...], ...] = ()) -> Callable:
  """-> predict(state, batch) -> the system's outputs sharded over 'data', averaged over the
  batch and its `tta_views` (vad_jax.evaluate.tta; views transform the 'video' field)."""
  system_predict = tta.with_views(system.predict, tta_views)

  def predict(state: TrainState, batch):
    return system_predict(state.eval_variables(), batch)

  rep, data = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
  return jax.jit(predict, in_shardings=(rep, data), out_shardings=data)


def init_state(config, system, mesh, spec: dict, tx_fn: Callable) -> TrainState:
  """Variables initialised under jit straight into their (replicated) sharding, from a batch
  spec {field: ShapeDtypeStruct}; `tx_fn(params)` builds the optimizer."""
  def init(rng):
    variables = system.init(rng, spec)
    return state_lib.create(variables, tx_fn(variables['params']), config.ema_decay)

  # It runs once, so on CPU it is compiled without backend optimisation: one random draw per
  # parameter makes a graph XLA:CPU takes ~23 s to optimise and 13 s not to. The values agree
  # with the optimised build's to 1 ulp (2e-7), and every CPU run uses this same build.
  options = {'xla_backend_optimization_level': 0} if jax.default_backend() == 'cpu' else None
  return jax.jit(init, out_shardings=mesh_lib.replicated(mesh),
                 compiler_options=options)(jax.random.key(config.seed))

