"""The optimizer from config.optim, against optax's own transforms and numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import common
from vad_jax.train import optim


def cfg(**overrides):
  o = common.get_config('x', 'x', 'x').optim
  for k, v in overrides.items():
    o[k] = v
  return o


def tree():
  rng = np.random.default_rng(0)
  p = {'dense': {'kernel': rng.normal(size=(3, 2)), 'bias': rng.normal(size=2)},
       'trunk': {'stem': {'kernel': rng.normal(size=(2, 2))}, 'head': {'kernel': rng.normal(size=(2, 2))}}}
  g = jax.tree.map(lambda x: rng.normal(size=x.shape), p)
  f32 = lambda t: jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), t)
  return f32(p), f32(g)


def test_adamw_equals_optax_adamw_bit_for_bit():
  p, g = tree()
  o = cfg(lr=1e-2, warmup_steps=2, weight_decay=0.1, grad_clip=0.5)
  ours = optim.make(o, p, (), num_steps=10)
  ref = optax.chain(optax.clip_by_global_norm(0.5), optax.adamw(
      optim.schedule(o, 10), weight_decay=0.1, mask=jax.tree.map(lambda x: x.ndim > 1, p)))
  s1, s2 = ours.init(p), ref.init(p)
  for _ in range(4):
    u1, s1 = ours.update(g, s1, p)
    u2, s2 = ref.update(g, s2, p)
    for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
      np.testing.assert_array_equal(a, b)


def test_keras_l2_on_kernels_and_frozen_paths():
  p, g = tree()
  l2, lr, eps = 0.003, 1e-3, 1e-8
  o = cfg(name='adam', lr=lr, schedule='constant', grad_clip=0.0, l2=l2, eps=eps)
  tx = optim.make(o, p, frozen=(r'^trunk/stem/',), num_steps=5)
  u, _ = tx.update(g, tx.init(p), p)
  # numpy: one Adam step on g + 2 * l2 * w for kernels, g for biases (bias-corrected m/sqrt(v)).
  for path, want_l2 in ((('dense', 'kernel'), True), (('dense', 'bias'), False),
                        (('trunk', 'head', 'kernel'), True)):
    w = np.asarray(p[path[0]][path[1]] if len(path) == 2 else p[path[0]][path[1]][path[2]])
    gr = np.asarray(g[path[0]][path[1]] if len(path) == 2 else g[path[0]][path[1]][path[2]])
    gg = gr + 2 * l2 * w if want_l2 else gr
    want = -lr * gg / (np.abs(gg) + eps)
    got = u[path[0]][path[1]] if len(path) == 2 else u[path[0]][path[1]][path[2]]
    np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_array_equal(u['trunk']['stem']['kernel'], 0.0)    # frozen: no update


def test_lr_multiplier_scales_updates_without_recompiling():
  p, g = tree()
  tx = optim.make(cfg(name='sgd', lr=0.1, schedule='constant', grad_clip=0.0), p, (), 5)
  # Shardings explicit, as in the train step (vad_jax.train.step).
  rep = jax.sharding.NamedSharding(jax.sharding.Mesh(np.array(jax.devices()[:1]), ('data',)),
                                   jax.sharding.PartitionSpec())
  step = jax.jit(lambda s: tx.update(g, s, p), in_shardings=(rep,), out_shardings=rep)
  u1, state = step(jax.device_put(tx.init(p), rep))
  step(state)
  compiled = step._cache_size()
  half = optim.scale_lr(state, 0.5)
  assert float(optim.lr_multiplier(half)) == 0.5
  u2, after = step(half)
  assert step._cache_size() == compiled
  for a, b, gr in zip(jax.tree.leaves(u1), jax.tree.leaves(u2), jax.tree.leaves(g)):
    np.testing.assert_allclose(a, -0.1 * np.asarray(gr), rtol=1e-6)
    np.testing.assert_allclose(b, 0.5 * np.asarray(a), rtol=1e-6)
  assert float(optim.lr_multiplier(after)) == 0.5


def test_reduce_on_plateau_halves_after_patience():
  p, g = tree()
  o = cfg(name='sgd', lr=1.0, schedule='reduce_on_plateau', grad_clip=0.0)
  o.plateau.patience = 2
  tx = optim.make(o, p, (), 10)
  s = tx.init(p)
  sizes = []
  for _ in range(6):
    u, s = tx.update(g, s, p, value=jnp.float32(1.0))      # the loss never improves
    sizes.append(float(u['dense']['bias'][0] / -g['dense']['bias'][0]))
  assert sizes[0] == pytest.approx(1.0) and sizes[-1] < 1.0


def test_bad_values_are_one_line_errors():
  for kwargs, match in (({'name': 'lamb'}, "optim.name='lamb'"),
                        ({'schedule': 'step'}, "optim.schedule='step'"),
                        ({'lr': 0.0}, 'optim.lr=0.0 must be > 0'),
                        ({'name': 'adam', 'weight_decay': 0.1}, 'use optim.l2')):
    with pytest.raises(ValueError, match=match):
      optim.check(cfg(**kwargs))
