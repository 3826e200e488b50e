"""The one jitted, sharded train step and the prediction step, for any System.

State is replicated and donated; the batch is sharded over the mesh's 'data' axis; the step's
RNG is folded from the step counter, so a run restored at step s draws exactly the randomness an
uninterrupted run would. BatchNorm statistics are computed over the global batch (XLA inserts the
cross-device reductions), so 1 device and 8 devices take the same step. The config's training
tricks (`tricks`: SAM, mixup / CutMix, SWA) live inside this one step for every system.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from vad_jax import mesh as mesh_lib
from vad_jax.data import mixing
from vad_jax.evaluate import tta
from vad_jax.train import optim, state as state_lib
from vad_jax.train.state import TrainState


def mixup_enabled(config) -> bool:
  m = config.get('mixup')
  return bool(m) and (m.mixup_alpha > 0 or m.cutmix_alpha > 0) and m.prob > 0


def swa_enabled(config) -> bool:
  return config.get('swa') is not None and config.swa.start_step > 0


def tricks(config) -> dict:
  """The keyword arguments of `make_train_step` that `config` switches on: SAM
  (`optim.sam_rho`), mixup / CutMix (`mixup.*`), SWA (`swa.start_step`, `swa.every`)."""
  return dict(sam=optim.uses_sam(config.optim),
              mixup=dict(config.mixup) if mixup_enabled(config) else None,
              swa=(config.swa.start_step, config.swa.every) if swa_enabled(config) else None)


def make_train_step(system, mesh, seed: int, lr_schedule: optax.Schedule, ema_decay: float, *,
                    sam: bool = False, mixup: dict | None = None,
                    swa: tuple[int, int] | None = None) -> Callable:
  """-> step(state, batch) -> (state, metrics); batch = {field: global array} of
  `system.train_fields`.

  ema_decay > 0: `state.ema` moves to ema_decay * ema + (1 - ema_decay) * (new params and model
  state). sam: the optimizer is `optax.contrib.sam` (opaque) and gets `grad_fn`, the gradient of
  the same loss (same batch, same RNG) at the perturbed weights; BatchNorm statistics come from
  the unperturbed pass. mixup: {mixup_alpha, cutmix_alpha, switch_prob, prob}: the batch's
  `system.mix_field` is mixed on device with an RNG split from the step's
  (vad_jax.data.mixing; the loss gets 'label_b' and 'mix_lam'). swa: (start, every): after
  steps start, start + every, ... the parameters join an equal-weight running mean
  (`state.ema` with 'count').
  """
  base_rng = jax.random.key(seed)
  if mixup is not None and not getattr(system, 'mix_field', None):
    raise ValueError(f'mixup is on but {type(system).__name__} names no mix_field (the input '
                     'that can be mixed) and reads no mixed labels')

  def step(state: TrainState, batch):
    rng = jax.random.fold_in(base_rng, state.step)
    if mixup is not None:
      rng, mix_rng = jax.random.split(rng)
      batch = mixing.mix_batch(batch, mix_rng, system.mix_field, mixup)

    def loss_fn(params):
      return system.loss({'params': params, **state.model_state}, batch, rng)

    (loss, (metrics, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    if sam:
      grad_fn = lambda params, _: jax.grad(lambda p: loss_fn(p)[0])(params)
      opt_updates, opt_state = state.tx.update(grads, state.opt_state, state.params,
                                               grad_fn=grad_fn)
    else:
      opt_updates, opt_state = state.tx.update(grads, state.opt_state, state.params, value=loss)
    params = optax.apply_updates(state.params, opt_updates)
    model_state = dict(state.model_state, **updates)
    ema = state.ema
    if swa is not None:
      ema = _swa_update(ema, params, model_state, state.step + 1, *swa)
    elif ema is not None:
      ema = optax.incremental_update({'params': params, 'model_state': model_state}, ema,
                                     step_size=1.0 - ema_decay)
    lr = lr_schedule(state.step) * optim.lr_multiplier(opt_state)
    metrics = dict(metrics, grad_norm=optax.tree.norm(grads), lr=lr)
    return state.replace(step=state.step + 1, params=params, model_state=model_state,
                         opt_state=opt_state, ema=ema), metrics

  rep, data = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
  return jax.jit(step, in_shardings=(rep, data), out_shardings=(rep, rep), donate_argnums=(0,))


def _swa_update(ema: dict, params, model_state, done: jax.Array, start: int, every: int) -> dict:
  """After `done` steps: a snapshot joins the mean when done >= start and (done - start) %
  every == 0 (mean_{n+1} = mean_n + (p - mean_n) / (n + 1)); model_state is the latest."""
  take = (done >= start) & ((done - start) % every == 0)
  count = ema['count']
  w = jnp.where(take, 1.0 / (count + 1).astype(jnp.float32), 0.0)
  mean = jax.tree.map(lambda m, p: m + (w * (p - m)).astype(m.dtype), ema['params'], params)
  return {'params': mean, 'model_state': model_state, 'count': count + take.astype(count.dtype)}


def make_predict_step(system, mesh, tta_views: tuple[tuple[str, ...], ...] = ()) -> Callable:
  """-> predict(state, batch) -> the system's outputs sharded over 'data', averaged over the
  batch and its `tta_views` (vad_jax.evaluate.tta; views transform the system's first
  predict field, a video [B, N, H, W, C] or an image [B, H, W, C])."""
  system_predict = tta.with_views(system.predict, tta_views, field=system.predict_fields[0])

  def predict(state: TrainState, batch):
    return system_predict(state.eval_variables(), batch)

  rep, data = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
  return jax.jit(predict, in_shardings=(rep, data), out_shardings=data)


def init_state(config, system, mesh, spec: dict, tx_fn: Callable) -> TrainState:
  """Variables initialised under jit straight into their (replicated) sharding, from a batch
  spec {field: ShapeDtypeStruct}; `tx_fn(params)` builds the optimizer."""
  def init(rng):
    variables = system.init(rng, spec)
    return state_lib.create(variables, tx_fn(variables['params']), config.ema_decay,
                            swa=swa_enabled(config))

  # It runs once, so on CPU it is compiled without backend optimisation: one random draw per
  # parameter makes a graph XLA:CPU takes ~23 s to optimise and 13 s not to. The values agree
  # with the optimised build's to 1 ulp (2e-7), and every CPU run uses this same build.
  options = {'xla_backend_optimization_level': 0} if jax.default_backend() == 'cpu' else None
  return jax.jit(init, out_shardings=mesh_lib.replicated(mesh),
                 compiler_options=options)(jax.random.key(config.seed))

