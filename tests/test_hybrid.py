"""Hybrid detector: output shapes, the regression target, the anomaly score, the loss wiring."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import hybrid as hybrid_config
from vad_jax import systems
from vad_jax.classes import CLASS_NAMES
from vad_jax.data.source import DataInfo
from vad_jax.models import hybrid, inputs
from vad_jax.models.efficientnet import preprocess
from vad_jax.systems import hybrid as hybrid_system


def info(config, counts=None):
  n = hybrid_system.HybridSystem.train_frames(config)
  spec = {'video': jax.ShapeDtypeStruct((n, config.data.height, config.data.width, 3), jnp.uint8),
          'label': jax.ShapeDtypeStruct((), jnp.int32)}
  return DataInfo(CLASS_NAMES, np.arange(1, 15) if counts is None else np.asarray(counts), spec)


def tiny_system(**model_overrides):
  c = hybrid_config.get_config('tiny')
  for k, v in model_overrides.items():
    c.model[k] = v
  return c, systems.get('hybrid').from_config(c, info(c))


def init(system, video):
  """Variables for `video`'s shape (jitted: op-by-op EfficientNet is slow on CPU)."""
  spec = {'video': jax.ShapeDtypeStruct(video.shape, video.dtype)}
  return jax.jit(lambda key: system.init(key, spec))(jax.random.key(0))


def test_output_shapes_any_length():
  c, system = tiny_system()
  t, h = c.data.clip_len, c.model.horizon
  video = jax.ShapeDtypeStruct((2, 3 * t + h, 32, 32, 3), jnp.uint8)
  variables = jax.eval_shape(system.init, jax.random.key(0), {'video': video})
  out = jax.eval_shape(lambda v, x: system.model.apply(v, x, train=False), variables, video)
  assert out['logits'].shape == (2, 3, 14)
  assert out['score'].shape == (2, 3)
  assert out['reg'].shape == out['reg_target'].shape == (2, 3, c.model.reg_dim)
  assert out['vae_recon'].shape == out['vae_in'].shape == (2, 3, 2 * c.model.lstm_hidden)
  assert out['vae_mu'].shape == (2, 3, c.model.vae_latent)
  # Scoring needs no extra frames; clips start every eval_stride frames.
  s = c.data.eval_stride
  pred = jax.eval_shape(system.predict, variables,
                        {'video': jax.ShapeDtypeStruct((1, 5 * t, 32, 32, 3), jnp.uint8)})
  k = (5 * t - t) // s + 1
  assert s < t and pred['score'].shape == (1, k) and pred['logits'].shape == (1, k, 14)


def test_overlapping_clips_equal_disjoint_clips_of_the_shifted_video():
  c, system = tiny_system()                     # 'rgb' input: every frame is processed alone
  t, s = c.data.clip_len, c.data.eval_stride
  video = jnp.asarray(np.random.default_rng(0).integers(0, 256, (1, 3 * t, 32, 32, 3)), jnp.uint8)
  variables = init(system, video)
  over = jax.jit(system.predict)(variables, {'video': video})['logits']        # [1, K, C]
  apply = jax.jit(lambda v, x: system.model.apply(v, x, train=False)['logits'])
  for k in range(over.shape[1]):
    alone = apply(variables, video[:, k * s:k * s + t])
    np.testing.assert_allclose(over[0, k], alone[0, 0], rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match='stride'):
    system.model.apply(variables, video, train=False, stride=t + 1)


def test_score_is_one_minus_p_normal():
  logits = jnp.array([[2.0, 0.0, -1.0], [-3.0, 1.0, 1.0]])
  p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  np.testing.assert_allclose(hybrid.clip_anomaly_score(logits), 1 - p[:, 0], rtol=1e-6)


def test_regression_target_is_projected_future_feature_with_stop_gradient():
  c, system = tiny_system()
  t, h = c.data.clip_len, c.model.horizon
  rng = np.random.default_rng(0)
  video = jnp.asarray(rng.integers(0, 255, (2, 2 * t + h, 32, 32, 3)), jnp.uint8)
  variables = init(system, video)

  def forward(p):
    out, inter = system.model.apply({'params': p, 'batch_stats': variables['batch_stats']},
                                    video, train=False, capture_intermediates=True)
    return out, inter['intermediates']['trunk']['__call__'][0]

  out, feats = jax.jit(forward)(variables['params'])
  # Independent recomputation: trunk feature of frame k*T + T - 1 + horizon, projected by the
  # fixed orthonormal P, standardised over the feature axis.
  feats = np.asarray(feats).reshape(2, 2 * t + h, -1)
  proj = hybrid.target_projection(feats.shape[-1], c.model.reg_dim)
  np.testing.assert_allclose(proj.T @ proj, np.eye(c.model.reg_dim), atol=1e-5)
  future = feats[:, [t - 1 + h, 2 * t - 1 + h]] @ proj
  want = (future - future.mean(-1, keepdims=True)) / np.sqrt(future.var(-1, keepdims=True) + 1e-5)
  np.testing.assert_allclose(out['reg_target'], want, rtol=1e-3, atol=1e-4)
  # No gradient reaches any parameter through the target.
  g = jax.jit(jax.grad(lambda p: jnp.sum(forward(p)[0]['reg_target'] ** 2)))(variables['params'])
  assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(g))


def test_loss_components_and_weights():
  c, system = tiny_system()
  t, h = c.data.clip_len, c.model.horizon
  rng = np.random.default_rng(1)
  batch = {'video': jnp.asarray(rng.integers(0, 255, (4, 2 * t + h, 32, 32, 3)), jnp.uint8),
           'label': jnp.array([0, 3, 0, 7], jnp.int32)}
  variables = init(system, batch['video'])
  loss_fn = jax.jit(system.loss)
  loss, (m, updates) = loss_fn(variables, batch, jax.random.key(2))
  expect = 1.0 * m['reg'] + 0.5 * m['focal'] + 0.3 * m['mil'] + 0.3 * m['vae']
  np.testing.assert_allclose(loss, expect, rtol=1e-6)
  assert all(np.isfinite(float(v)) for v in m.values())
  assert jax.tree.structure(updates) == jax.tree.structure({'batch_stats': variables['batch_stats']})
  # An all-normal batch has no MIL pairs: the MIL term is exactly 0.
  normal = dict(batch, label=jnp.zeros(4, jnp.int32))
  _, (m0, _) = loss_fn(variables, normal, jax.random.key(2))
  assert float(m0['mil']) == 0.0


def test_trunk_inputs_foreground_and_motion():
  rng = np.random.default_rng(0)
  scene = rng.integers(0, 256, (1, 1, 6, 6, 3))
  video = np.repeat(scene, 9, axis=1).astype(np.uint8)     # 9 frames of one static scene
  video[0, 2:5, 1, 1] = 255 - video[0, 2:5, 1, 1]          # an event in 3 of 9 frames
  x = video.astype(np.float64)
  fg = (x - scene) / 127.5                                  # the median is the static scene
  diff = np.concatenate([np.zeros_like(x[:, :1]), np.diff(x, axis=1)], axis=1) / 127.5
  got = np.asarray(inputs.trunk_inputs(jnp.asarray(video), 'foreground'))
  np.testing.assert_allclose(got, fg, atol=1e-6)
  got = np.asarray(inputs.trunk_inputs(jnp.asarray(video), 'motion'))
  assert got.shape == (1, 9, 6, 6, 6)
  np.testing.assert_allclose(got, np.concatenate([fg, diff], -1), atol=1e-6)
  assert np.count_nonzero(got[0, :, :, :, 3:]) == 2 * 3     # the event starts and ends: 2 frames
  rgb = np.asarray(inputs.trunk_inputs(jnp.asarray(video), 'rgb'))
  np.testing.assert_allclose(rgb, np.asarray(preprocess(jnp.asarray(video))), atol=1e-6)
  with pytest.raises(ValueError, match='model.input'):
    inputs.trunk_inputs(jnp.asarray(video), 'flow')



def test_weak_supervision_wiring(monkeypatch):
  """Only the witness clip (top score) of an anomalous bag carries its class; its other clips
  weigh 0; every clip of a normal bag is Normal; MIL ranks bags = videos ([B, K] scores)."""
  c, system = tiny_system()
  t, h = c.data.clip_len, c.model.horizon
  k = 3
  rng = np.random.default_rng(3)
  batch = {'video': jnp.asarray(rng.integers(0, 255, (4, k * t + h, 32, 32, 3)), jnp.uint8),
           'label': jnp.array([0, 3, 0, 7], jnp.int32)}
  seen = {}
  real_focal, real_mil = hybrid_system.softmax_focal_loss, hybrid_system.mil_ranking_loss

  def record(**values):          # runs under jit: the loss is compiled, not run op by op
    jax.debug.callback(lambda **v: seen.update({k: np.asarray(x) for k, x in v.items()}),
                       **values)

  def focal(logits, labels, alpha, gamma, weights):
    record(labels=labels, weights=weights, alpha=alpha)
    return real_focal(logits, labels, alpha, gamma, weights)

  def mil(score, anomalous, *args):
    record(score=score, anomalous=anomalous)
    return real_mil(score, anomalous, *args)

  monkeypatch.setattr(hybrid_system, 'softmax_focal_loss', focal)
  monkeypatch.setattr(hybrid_system, 'mil_ranking_loss', mil)
  variables = init(system, batch['video'])
  jax.block_until_ready(jax.jit(system.loss)(variables, batch, jax.random.key(0)))
  jax.effects_barrier()
  assert {'labels', 'weights', 'alpha', 'score', 'anomalous'} <= set(seen)
  score = np.asarray(seen['score'])
  assert score.shape == (4, k)                                   # one bag per video
  np.testing.assert_array_equal(seen['anomalous'], [False, True, False, True])
  labels = np.asarray(seen['labels']).reshape(4, k)
  weights = np.asarray(seen['weights']).reshape(4, k)
  np.testing.assert_array_equal(labels, np.repeat([[0], [3], [0], [7]], k, axis=1))
  for v in (0, 2):
    np.testing.assert_array_equal(weights[v], 1.0)               # every clip of a normal video
  for v in (1, 3):
    want = np.zeros(k)
    want[np.argmax(score[v])] = 1.0                              # the witness only
    np.testing.assert_array_equal(weights[v], want)


def test_focal_alpha_comes_from_the_labels_the_loss_sees():
  c = hybrid_config.get_config('tiny')
  videos = np.array([100] + [10] * 13)
  system = systems.get('hybrid').from_config(c, info(c, videos))
  k = c.data.clips_per_video
  seen = np.array([100 * k] + [10] * 13, np.float64)    # K clips per normal video, 1 witness per anomalous
  inv = 1.0 / (seen + 1.0)
  np.testing.assert_allclose(system.alpha, inv / inv.mean(), rtol=1e-6)


def test_trunk_is_frozen_only_when_it_starts_from_weights(tmp_path):
  c = hybrid_config.get_config('tiny')
  assert c.model.trunk.frozen_stages == 1 and not c.model.trunk.weights
  system = systems.get('hybrid').from_config(c, info(c))
  assert system.model.frozen_stages == 0 and system.frozen_params() == ()
  c.model.trunk.weights = str(tmp_path / 'b0.h5')
  system = systems.get('hybrid').from_config(c, info(c))
  assert system.model.frozen_stages == 1 and system.frozen_params() == ('^trunk/(stage0|stem)/',)
