"""Seed 003 as a system: the contract, the loss, and the trainer end to end with the per-class
accuracy monitor on a run made imbalanced on purpose."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import violence as violence_config
from vad_jax import systems
from vad_jax.data.source import DataInfo
from vad_jax.losses.focal import softmax_focal_loss
from vad_jax.train import loop


def info(t=8, f=12):
  spec = {'features': jax.ShapeDtypeStruct((t, f), jnp.float32),
          'label': jax.ShapeDtypeStruct((), jnp.int32)}
  return DataInfo(('NonViolent', 'Violent'), np.array([30, 10]), spec)


def test_system_builds_from_the_element_spec_and_its_loss_is_the_seed_focal():
  c = violence_config.get_config('tiny')
  system = systems.get('violence').from_config(c, info())
  batch = {'features': jnp.asarray(np.random.default_rng(0).normal(size=(4, 8, 12)), jnp.float32),
           'label': jnp.array([0, 1, 1, 0], jnp.int32)}
  variables = system.init(jax.random.key(0), {k: jax.ShapeDtypeStruct(v.shape, v.dtype)
                                              for k, v in batch.items()})
  assert variables['params']['compress']['kernel'].shape == (12, c.model.compress)
  loss, (metrics, updates) = system.loss(variables, batch, jax.random.key(1))
  assert set(updates) == {'batch_stats'}
  # The same loss recomputed from the model's train-mode logits (same dropout rng).
  out, _ = system.model.apply(variables, batch['features'], train=True,
                              rngs={'dropout': jax.random.key(1)}, mutable=['batch_stats'])
  want = softmax_focal_loss(out['logits'], batch['label'], jnp.full((2,), 0.25), 3.0)
  np.testing.assert_allclose(loss, want, rtol=1e-6)
  pred = system.predict(variables, {'features': batch['features']})
  assert pred['logits'].shape == (4, 2) and pred['attention'].shape == (4, 8)
  np.testing.assert_allclose(pred['attention'].sum(-1), 1.0, rtol=1e-5)


def test_wrong_inputs_are_clear_errors():
  c = violence_config.get_config('tiny')
  video = {'video': jax.ShapeDtypeStruct((8, 32, 32, 3), jnp.uint8)}
  with pytest.raises(ValueError, match="reads 'features'"):
    systems.get('violence').from_config(c, DataInfo(('a', 'b'), np.ones(2), video))
  c.eval_tta = 'hflip'
  with pytest.raises(ValueError, match='views transform videos'):
    loop.check_config(c)


def test_imbalanced_tiny_run_halves_the_lr_then_stops(tmp_path):
  """A real run made imbalanced on purpose (4 violent of 32 training videos, a high learning
  rate): the model predicts NonViolent for everything, the gap is 1.0 at every validation; with
  lr_patience 2 the monitor halves the learning rate at the 2nd evaluation and stops at the 3rd
  (stop_patience 3, the seed's), and the run says so in metrics.json and its checkpoint."""
  c = violence_config.get_config('tiny')
  c.data.cache_dir = str(tmp_path / 'cache')
  c.data.violent_fraction = 0.1
  c.data.num_validation = c.data.num_test = 64
  c.optim.lr = 0.01
  c.num_steps, c.eval_every, c.checkpoint_every = 12, 2, 2
  c.monitors.class_gap.lr_patience = 2
  workdir = str(tmp_path / 'run')
  results = loop.train_and_evaluate(c, workdir)
  events = [(e['step'], e['action']) for e in results['monitor_events'] if e['action'] != 'log']
  assert events == [(4, 'scale_lr'), (6, 'stop')]
  assert results['steps_trained'] == 6 and '3 consecutive' in results['stopped_early']
  with open(os.path.join(workdir, 'metrics.json')) as f:
    saved = json.load(f)
  assert saved['monitor_events'] == results['monitor_events']
  assert [e['level'] for e in saved['monitor_events'] if e['action'] == 'log'] == ['critical'] * 3
  assert os.path.exists(os.path.join(workdir, 'predictions_test.npz'))
  # The halved learning rate is in the saved optimizer state (no recompilation needed for it).
  import orbax.checkpoint as ocp
  state = ocp.StandardCheckpointer().restore(os.path.join(workdir, 'checkpoints', '6', 'state'))
  found = []
  jax.tree_util.tree_map_with_path(
      lambda p, x: found.append(float(x)) if 'lr_multiplier' in jax.tree_util.keystr(p) else None,
      state['opt_state'])
  assert found == [0.5]
  # Resuming a stopped run trains no further and reproduces the test metrics.
  again = loop.train_and_evaluate(c, workdir)
  assert again['steps_trained'] == 6 and again['balanced_accuracy'] == results['balanced_accuracy']
