"""The train state every system shares.

params: trained; model_state: every other Flax collection of the system ('batch_stats', an SVDD
centre, ...), replaced by what `System.loss` returns; ema: with `ema_decay` > 0, an exponential
moving average of BOTH (so evaluation pairs averaged weights with averaged BatchNorm statistics,
never with the raw weights' statistics).
"""

from typing import Any

import flax.struct
import jax
import optax


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  ema: Any = None                   # None or {'params': ..., 'model_state': ...}
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False, default=None)

  def variables(self) -> dict:
    """The variables training uses: {'params': ..., **model_state}."""
    return {'params': self.params, **self.model_state}

  def eval_variables(self) -> dict:
    """The variables evaluation uses: the averages when `ema` is kept."""
    if self.ema is None:
      return self.variables()
    return {'params': self.ema['params'], **self.ema['model_state']}


def create(variables: dict, tx: optax.GradientTransformation, ema_decay: float) -> TrainState:
  params = variables['params']
  model_state = {k: v for k, v in variables.items() if k != 'params'}
  ema = {'params': params, 'model_state': model_state} if ema_decay > 0 else None
  return TrainState(step=jax.numpy.zeros((), jax.numpy.int32), params=params,
                    model_state=model_state, opt_state=tx.init(params), ema=ema, tx=tx)
