"""Seed 001 as a system: the combined anomaly score, the Deep SVDD centre (computed before
training, checkpointed), and the trainer end to end with every trick on (SAM, SWA, mixup,
test-time views) reporting each score component's frame AUC beside the combined one."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from sklearn.metrics import roc_auc_score

from configs import svdd_vae as svdd_config
from vad_jax import mesh as mesh_lib
from vad_jax.data import pipeline
from vad_jax.evaluate.scoring import SplitScores
from vad_jax.systems.svdd_vae import anomaly_score
from vad_jax.train import loop


def test_anomaly_score_is_the_weighted_mean_of_standardised_evidence():
  rng = np.random.default_rng(0)
  parts = {n: rng.uniform(0, 3, size=(2, 5)).astype(np.float32)
           for n in ('cls', 'binary', 'svdd', 'vae', 'conv')}
  parts['cls'] /= 3
  parts['binary'] /= 3
  stats = {'svdd': np.array([1.0, 4.0]), 'vae': np.array([0.5, 0.25]), 'conv': np.array([2.0, 1.0])}
  weights = {'cls': 1.0, 'binary': 0.5, 'svdd': 2.0, 'vae': 0.0, 'conv': 1.0}
  out = jax.jit(lambda p, s: anomaly_score(p, s, weights))(parts, stats)
  sig = lambda x: 1 / (1 + np.exp(-x))
  want = {'cls': parts['cls'], 'binary': parts['binary'],
          'svdd': sig((parts['svdd'] - 1.0) / 2.0), 'vae': sig((parts['vae'] - 0.5) / 0.5),
          'conv': sig(parts['conv'] - 2.0)}
  for name, w in want.items():
    np.testing.assert_allclose(out[f'score_{name}'], w, rtol=1e-5)
  combined = sum(weights[n] * want[n] for n in want) / sum(weights.values())
  np.testing.assert_allclose(out['score'], combined, rtol=1e-5)
  with pytest.raises(ValueError, match='nothing to combine'):
    anomaly_score(parts, stats, {'cls': 0.0})


def test_config_checks():
  c = svdd_config.get_config('tiny')
  c.score.weights.conv = 1.0
  c.model.conv_vae = False
  with pytest.raises(ValueError, match='conv_vae'):
    loop.check_config(c)
  c = svdd_config.get_config('tiny')
  c.ema_decay = 0.9
  with pytest.raises(ValueError, match='choose one'):
    loop.check_config(c)
  c = svdd_config.get_config('tiny')
  c.swa.start_step = 100
  with pytest.raises(ValueError, match='after the last step'):
    loop.check_config(c)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('svdd') / 'run')
  c = svdd_config.get_config('tiny')
  assert c.optim.sam_rho > 0 and c.swa.start_step > 0 and c.mixup.mixup_alpha > 0 and c.eval_tta
  return c, workdir, loop.train_and_evaluate(c, workdir)


def test_end_to_end_reports_every_component_and_saves_their_scores(run):
  c, workdir, results = run
  with open(os.path.join(workdir, 'metrics.json')) as f:
    saved = json.load(f)
  for name in ('cls', 'binary', 'svdd', 'vae', 'conv'):
    assert 0.0 <= saved[f'frame_auc_{name}'] <= 1.0
  assert 'SVDD' in saved['score_definition'] and saved['checkpoint_step'] in (2, 4)
  scores = SplitScores.load(os.path.join(workdir, 'scores_test.npz'))
  parts = np.load(os.path.join(workdir, 'components_test.npz'))
  assert roc_auc_score(scores.frame_labels, scores.frame_scores) == pytest.approx(
      saved['frame_auc'], abs=1e-12)
  for name in ('svdd', 'conv'):
    assert roc_auc_score(scores.frame_labels, parts[name]) == pytest.approx(
        saved[f'frame_auc_{name}'], abs=1e-12)


def test_centre_is_the_mean_normal_projection_and_is_checkpointed(run):
  """The centre in the checkpoints equals one recomputed here from the initial weights: the
  mean svdd_z of the clips of normal training videos, entries under eps pushed to +-eps."""
  c, workdir, _ = run
  mesh = mesh_lib.make_mesh(c.mesh)
  system, srcs, info, _ = loop.build(c)
  state = loop.init_state(c, system, info, mesh)
  variables = jax.device_get(state.variables())
  apply = jax.jit(lambda v, x: system.model.apply(v, x, train=False)['svdd_z'])
  zs = []
  batches = pipeline.eval_batches(c, srcs['train'], system.train_fields,
                                  loop.eval_examples_per_step(c, mesh))
  for i, b in enumerate(batches):
    if i >= c.score.center_batches:
      break
    z = np.asarray(apply({'params': variables['params'],
                          'batch_stats': variables['batch_stats']}, jnp.asarray(b['video'])))
    keep = (b['label'] == 0) & (b['index'] >= 0)
    zs.append(z[keep].reshape(-1, z.shape[-1]))
  mean = np.concatenate(zs).mean(0)
  want = np.where(np.abs(mean) < c.loss.svdd_eps, np.where(mean >= 0, 1, -1) * c.loss.svdd_eps,
                  mean)
  for folder in ('checkpoints', 'best'):
    step = sorted(os.listdir(os.path.join(workdir, folder)), key=int)[-1]
    ckpt = ocp.StandardCheckpointer().restore(os.path.join(workdir, folder, step, 'state'))
    np.testing.assert_allclose(ckpt['model_state']['svdd']['center'], want, rtol=1e-4,
                               atol=1e-6)
    # SWA is on: the averaged weights and their recomputed statistics are saved with it
    assert int(ckpt['ema']['count']) >= 1
