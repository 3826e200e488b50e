"""The training tricks the one step applies for any system: SAM (optax.contrib.sam inside the
jitted step), SWA (equal-weight parameter mean + statistics recomputed for it) and on-device
mixup. Each against a hand computation on a toy system, through `make_train_step` itself."""

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import common
from vad_jax import mesh as mesh_lib
from vad_jax.data import mixing
from vad_jax.systems.base import System
from vad_jax.train import optim, state as state_lib, step as step_lib, swa

D = 3
A = np.diag([1.0, 3.0, 0.5]).astype(np.float32)
B = np.array([0.2, -0.1, 0.4], np.float32)


@dataclasses.dataclass(frozen=True)
class Quadratic(System):
  """L(w) = 0.5 w.A.w + b.w + 0 * mean(x): its gradient A w + b does not depend on the batch."""
  task: ClassVar[str] = 'classification'
  train_fields: ClassVar[tuple[str, ...]] = ('x', 'label')
  predict_fields: ClassVar[tuple[str, ...]] = ('x',)

  @classmethod
  def from_config(cls, config, info):
    return cls()

  def init(self, rng, spec):
    return {'params': {'w': jnp.array([1.0, -2.0, 0.5])}}

  def loss(self, variables, batch, rng):
    w = variables['params']['w']
    l = 0.5 * w @ jnp.asarray(A) @ w + jnp.asarray(B) @ w + 0.0 * jnp.mean(batch['x'])
    return l, ({'loss': l}, {})

  def predict(self, variables, batch):
    return {'logits': batch['x']}


class BNNet(nn.Module):
  @nn.compact
  def __call__(self, x, train):
    y = nn.Dense(4, name='dense')(x)
    return nn.BatchNorm(use_running_average=not train, momentum=0.8, name='bn')(y)


@dataclasses.dataclass(frozen=True)
class WithBN(System):
  """A Dense + BatchNorm net; the loss also echoes what it saw (x and the mixed labels)."""
  task: ClassVar[str] = 'classification'
  train_fields: ClassVar[tuple[str, ...]] = ('x', 'label')
  predict_fields: ClassVar[tuple[str, ...]] = ('x',)
  mix_field: ClassVar[str] = 'x'
  net: BNNet = BNNet()

  @classmethod
  def from_config(cls, config, info):
    return cls()

  def init(self, rng, spec):
    return self.net.init(rng, jnp.zeros(spec['x'].shape, jnp.float32), train=False)

  def loss(self, variables, batch, rng):
    y, mutated = self.net.apply(variables, batch['x'], train=True, mutable=['batch_stats'])
    l = jnp.mean(jnp.square(y - 1.0))
    seen = {'loss': l, 'x_sum': jnp.sum(batch['x'])}
    if 'mix_lam' in batch:
      seen.update(lam=jnp.mean(batch['mix_lam']), label_b=batch['label_b'].astype(jnp.float32))
    return l, (seen, dict(mutated))

  def predict(self, variables, batch):
    return {'logits': self.net.apply(variables, batch['x'], train=False)}


def optim_config(**kw):
  c = common.get_config('toy', 'toy', 'tiny').optim
  c.name, c.schedule, c.grad_clip, c.lr = 'sgd', 'constant', 0.0, 0.1
  for k, v in kw.items():
    c[k] = v
  return c


def run_steps(system, opt, batches, *, ema_decay=0.0, **tricks):
  mesh = mesh_lib.make_mesh({'data': 1}, jax.devices()[:1])
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batches[0].items()}
  variables = system.init(jax.random.key(0), spec)
  tx = optim.make(opt, variables['params'], (), 100)
  state = state_lib.create(variables, tx, ema_decay, swa=tricks.get('swa') is not None)
  state = jax.tree.map(jnp.copy, state)      # own buffers: the step donates params and ema
  step = step_lib.make_train_step(system, mesh, 0, optim.schedule(opt, 100), ema_decay, **tricks)
  history, metrics = [], []
  for b in batches:
    state, m = step(state, mesh_lib.to_global(b, mesh))
    history.append(jax.device_get(state.params))
    metrics.append(jax.device_get(m))
  return state, history, metrics, mesh


def toy_batches(n, b=4, seed=0):
  rng = np.random.default_rng(seed)
  return [{'x': rng.normal(size=(b, D)).astype(np.float32),
           'label': rng.integers(0, 2, size=b).astype(np.int32)} for _ in range(n)]


def test_sam_step_is_the_gradient_at_the_normalised_ascent_point():
  """One SGD step with SAM: w1 = w0 - lr * grad(w0 + rho g / ||g||), g = grad(w0) = A w0 + b."""
  rho, lr = 0.05, 0.1
  w0 = np.array([1.0, -2.0, 0.5], np.float64)
  g = A @ w0 + B
  g_adv = A @ (w0 + rho * g / np.linalg.norm(g)) + B
  _, hist_sam, m_sam, _ = run_steps(Quadratic(), optim_config(sam_rho=rho), toy_batches(1),
                                    sam=True)
  _, hist_plain, _, _ = run_steps(Quadratic(), optim_config(), toy_batches(1))
  np.testing.assert_allclose(hist_sam[0]['w'], w0 - lr * g_adv, rtol=1e-6)
  np.testing.assert_allclose(hist_plain[0]['w'], w0 - lr * g, rtol=1e-6)
  assert np.abs(hist_sam[0]['w'] - hist_plain[0]['w']).max() > 1e-3   # SAM really moved it
  np.testing.assert_allclose(m_sam[0]['grad_norm'], np.linalg.norm(g), rtol=1e-6)


def test_sam_config_checks():
  with pytest.raises(ValueError, match='reduce_on_plateau'):
    optim.check(optim_config(sam_rho=0.05, schedule='reduce_on_plateau'))
  with pytest.raises(ValueError, match='sam_rho'):
    optim.check(optim_config(sam_rho=-1.0))


def test_swa_is_the_mean_of_the_snapshot_parameters_and_eval_uses_it():
  """swa=(start 2, every 2) over 6 steps: the mean of the parameters after steps 2, 4, 6."""
  batches = toy_batches(6)
  state, hist, _, _ = run_steps(WithBN(), optim_config(), batches, swa=(2, 2))
  want = jax.tree.map(lambda *p: np.mean(p, axis=0), hist[1], hist[3], hist[5])
  got = jax.device_get(state.ema['params'])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), got, want)
  assert int(state.ema['count']) == 3
  ev = state.eval_variables()
  np.testing.assert_allclose(ev['params']['dense']['kernel'], want['dense']['kernel'], rtol=1e-6)
  # Before the first snapshot, evaluation uses the raw parameters.
  early, hist2, _, _ = run_steps(WithBN(), optim_config(), batches[:1], swa=(2, 2))
  assert int(early.ema['count']) == 0
  np.testing.assert_allclose(early.eval_variables()['params']['dense']['kernel'],
                             hist2[0]['dense']['kernel'])
  with pytest.raises(ValueError, match='choose one'):
    state_lib.create({'params': {}}, optax.sgd(0.1), 0.9, swa=True)


def test_swa_refresh_recomputes_batchnorm_statistics_for_the_average():
  """refresh = the mean over batches of each batch's BatchNorm statistics under the averaged
  weights (torch's update_bn), computed here with numpy."""
  batches = toy_batches(4)
  state, _, _, mesh = run_steps(WithBN(), optim_config(), batches, swa=(1, 1))
  stats_fn = swa.make_batch_statistics(WithBN(), mesh, 0)
  new = swa.refresh(state, stats_fn, toy_batches(3, seed=1), mesh)
  k = np.asarray(state.ema['params']['dense']['kernel'], np.float64)
  bias = np.asarray(state.ema['params']['dense']['bias'], np.float64)
  ys = [b['x'].astype(np.float64) @ k + bias for b in toy_batches(3, seed=1)]
  got = jax.device_get(new.ema['model_state']['batch_stats']['bn'])
  np.testing.assert_allclose(got['mean'], np.mean([y.mean(0) for y in ys], 0), rtol=1e-4,
                             atol=1e-5)
  np.testing.assert_allclose(got['var'], np.mean([y.var(0) for y in ys], 0), rtol=1e-4,
                             atol=1e-5)
  # the raw model's running statistics are untouched, and differ from the recomputed ones
  raw = jax.device_get(new.model_state['batch_stats']['bn'])
  assert np.abs(raw['mean'] - got['mean']).max() > 1e-3
  # an EMA of the parameters (ema_recompute_stats) gets the same treatment
  ema_state, _, _, _ = run_steps(WithBN(), optim_config(), batches, ema_decay=0.5)
  refreshed = swa.refresh(ema_state, stats_fn, toy_batches(3, seed=1), mesh)
  k = np.asarray(ema_state.ema['params']['dense']['kernel'], np.float64)
  bias = np.asarray(ema_state.ema['params']['dense']['bias'], np.float64)
  want = np.mean([(b['x'].astype(np.float64) @ k + bias).mean(0) for b in toy_batches(3, seed=1)], 0)
  np.testing.assert_allclose(refreshed.ema['model_state']['batch_stats']['bn']['mean'], want,
                             rtol=1e-4, atol=1e-5)


def test_mixup_in_the_step_mixes_with_the_steps_rng():
  """The loss sees x mixed by mixing.sample drawn from a key split off fold_in(seed, step), and
  label_b = label[perm]: recomputed here outside the step."""
  cfg = dict(mixup_alpha=0.4, cutmix_alpha=0.0, switch_prob=0.5, prob=1.0)
  batches = [{'x': np.random.default_rng(3).normal(size=(4, 1, 1, D)).astype(np.float32),
              'label': np.array([0, 1, 2, 3], np.int32)} for _ in range(2)]

  @dataclasses.dataclass(frozen=True)
  class Images(WithBN):
    def init(self, rng, spec):
      return self.net.init(rng, jnp.zeros((spec['x'].shape[0], D)), train=False)

    def loss(self, variables, batch, rng):
      flat = dict(batch, x=batch['x'].reshape(batch['x'].shape[0], -1))
      return WithBN.loss(self, variables, flat, rng)

  _, _, metrics, _ = run_steps(Images(), optim_config(), batches, mixup=cfg)
  for step, (b, m) in enumerate(zip(batches, metrics)):
    _, mix_rng = jax.random.split(jax.random.fold_in(jax.random.key(0), step))
    p = mixing.sample(mix_rng, 4, 1, 1, **cfg)
    x = np.asarray(b['x'], np.float64)
    lam, perm = float(p.lam), np.asarray(p.perm)
    np.testing.assert_allclose(m['lam'], lam, rtol=1e-6)
    np.testing.assert_allclose(m['x_sum'], (lam * x + (1 - lam) * x[perm]).sum(), rtol=1e-5)
    np.testing.assert_array_equal(m['label_b'], b['label'][perm])
    assert 0 < lam < 1
  with pytest.raises(ValueError, match='mix_field'):
    step_lib.make_train_step(Quadratic(), mesh_lib.make_mesh({'data': 1}, jax.devices()[:1]), 0,
                             optax.constant_schedule(0.1), 0.0, mixup=cfg)


def test_trick_switches_from_the_config():
  c = ml_collections.ConfigDict(common.get_config('toy', 'toy', 'tiny'))
  assert step_lib.tricks(c) == {'sam': False, 'mixup': None, 'swa': None}
  c.optim.sam_rho, c.mixup.cutmix_alpha, c.swa.start_step, c.swa.every = 0.05, 1.0, 10, 5
  t = step_lib.tricks(c)
  assert t['sam'] and t['mixup']['cutmix_alpha'] == 1.0 and t['swa'] == (10, 5)
