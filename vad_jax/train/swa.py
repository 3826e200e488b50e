"""Stochastic weight averaging, second half: statistics recomputed for the averaged weights
(also used for an EMA of the parameters with `ema_recompute_stats`).

The train step keeps the equal-weight mean of parameter snapshots (`vad_jax.train.step`,
`state.ema` with 'count'). Running statistics collected along the way (BatchNorm means and
variances, a system's score statistics) belong to the raw weights, not to their average, so
before the average is evaluated `refresh` recomputes them as torch's `swa_utils.update_bn`
does: the cumulative mean, over `swa.stat_batches` training batches, of each batch's
statistics under the averaged weights.

A batch's statistics are read off `System.loss` itself, for any system: every collection the
loss updates is an exponential moving average, new = m * old + (1 - m) * x (Flax BatchNorm,
and the systems' own running statistics), so the loss run once with the old values set to 0 and
once set to 1 gives a = (1 - m) x and b = m + (1 - m) x, hence m = b - a and x = a / (1 - m),
without knowing any module's momentum. Leaves the loss does not move (m = 1) keep their value.
Hand-written because no kept library recomputes Flax statistics for averaged weights.
"""

from __future__ import annotations

from typing import Iterable

import jax
import jax.numpy as jnp

from vad_jax import mesh as mesh_lib


def make_batch_statistics(system, mesh, seed: int):
  """-> stats(params, model_state, batch) -> {collection: tree}: one batch's statistics x of
  every collection `system.loss` updates (see the module docstring), jitted and sharded."""
  rng = jax.random.fold_in(jax.random.key(seed), 0x5A)

  def stats(params, model_state, batch):
    def run(fill=None):
      ms = model_state
      if fill is not None:
        ms = {k: (jax.tree.map(lambda x: jnp.full_like(x, fill)
                               if jnp.issubdtype(x.dtype, jnp.floating) else x, v)
                  if k in names else v) for k, v in model_state.items()}
      return system.loss({'params': params, **ms}, batch, rng)[1][1]

    names = tuple(k for k in jax.eval_shape(run) if k in model_state)
    a, b = run(0.0), run(1.0)
    out = {}
    for k in names:
      def solve(a_, b_, old):
        if not jnp.issubdtype(old.dtype, jnp.floating):
          return old
        keep = 1.0 - (b_ - a_)                      # 1 - m
        moved = jnp.abs(keep) > 1e-6
        return jnp.where(moved, a_ / jnp.where(moved, keep, 1.0), old)
      out[k] = jax.tree.map(solve, a[k], b[k], model_state[k])
    return out

  rep, data = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
  return jax.jit(stats, in_shardings=(rep, rep, data), out_shardings=rep)


def refresh(state, stats_fn, batches: Iterable[dict], mesh):
  """`state` with the averaged weights' statistics in `state.ema['model_state']`: the mean over
  `batches` (this process's numpy batches) of `stats_fn` under `state.ema['params']` (SWA, or an
  EMA of the parameters). Returns `state` unchanged without an average, and before SWA's first
  snapshot (count 0: evaluation uses the raw variables)."""
  if state.ema is None or int(state.ema.get('count', 1)) == 0:
    return state
  params, model_state = state.ema['params'], state.ema['model_state']
  total, n = None, 0
  for batch in batches:
    x = stats_fn(params, model_state, mesh_lib.to_global(batch, mesh))
    total = x if total is None else jax.tree.map(jnp.add, total, x)
    n += 1
  if not n:
    raise ValueError('swa.stat_batches must be >= 1')
  mean = jax.tree.map(lambda t: t / n, total)
  ema = dict(state.ema, model_state=dict(model_state, **mean))
  return state.replace(ema=ema)
