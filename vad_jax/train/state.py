"""The train state every system shares.

params: trained; model_state: every other Flax collection of the system ('batch_stats', an SVDD
centre, ...), replaced by what `System.loss` returns; ema: the averaged weights evaluation uses,
or None. Two kinds share the slot:
  * exponential moving average (`ema_decay` > 0): {'params', 'model_state'}, an EMA of BOTH (so
    evaluation pairs averaged weights with averaged BatchNorm statistics, never with the raw
    weights' statistics);
  * stochastic weight averaging (`swa.start_step` > 0): {'params', 'model_state', 'count'}, the
    equal-weight mean of `count` parameter snapshots; its model_state is the latest one until
    `vad_jax.train.swa.refresh` recomputes the statistics for the averaged weights. Before the
    first snapshot (count 0) evaluation uses the raw variables.
"""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  ema: Any = None                   # None, {'params', 'model_state'} or with 'count' (SWA)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False, default=None)

  def variables(self) -> dict:
    """The variables training uses: {'params': ..., **model_state}."""
    return {'params': self.params, **self.model_state}

  def eval_variables(self) -> dict:
    """The variables evaluation uses: the averages when `ema` is kept (SWA: once it holds a
    snapshot; selected with `where`, so it works under jit)."""
    if self.ema is None:
      return self.variables()
    averaged = {'params': self.ema['params'], **self.ema['model_state']}
    if 'count' not in self.ema:
      return averaged
    started = self.ema['count'] > 0
    return jax.tree.map(lambda a, b: jnp.where(started, a, b), averaged, self.variables())


def create(variables: dict, tx: optax.GradientTransformation, ema_decay: float,
           swa: bool = False) -> TrainState:
  params = variables['params']
  model_state = {k: v for k, v in variables.items() if k != 'params'}
  if ema_decay > 0 and swa:
    raise ValueError('ema_decay > 0 and swa.start_step > 0: both average the weights in one slot; '
                     'choose one')
  ema = None
  if ema_decay > 0:
    ema = {'params': params, 'model_state': model_state}
  elif swa:
    ema = {'params': params, 'model_state': model_state, 'count': jnp.zeros((), jnp.int32)}
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                    opt_state=tx.init(params), ema=ema, tx=tx)
