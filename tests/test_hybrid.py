"""Hybrid detector: output shapes, the regression target, the anomaly score, the loss wiring."""

import jax
import jax.numpy as jnp
import numpy as np

from configs import hybrid as hybrid_config
from vad_jax import systems
from vad_jax.models import hybrid


def tiny_system(**model_overrides):
  c = hybrid_config.get_config('tiny')
  for k, v in model_overrides.items():
    c.model[k] = v
  return c, systems.get('hybrid').from_config(c, np.arange(1, 15))


def test_output_shapes_any_length():
  c, system = tiny_system()
  t, h = c.data.clip_len, c.model.horizon
  video = jnp.zeros((2, 3 * t + h, 32, 32, 3), jnp.uint8)
  variables = system.init(jax.random.key(0), video)
  out = system.model.apply(variables, video, train=False)
  assert out['logits'].shape == (2, 3, 14)
  assert out['score'].shape == (2, 3)
  assert out['reg'].shape == out['reg_target'].shape == (2, 3, c.model.reg_dim)
  assert out['vae_recon'].shape == out['vae_in'].shape == (2, 3, 2 * c.model.lstm_hidden)
  assert out['vae_mu'].shape == (2, 3, c.model.vae_latent)
  # Scoring needs no extra frames and accepts any number of whole clips.
  pred = system.predict(variables, jnp.zeros((1, 5 * t, 32, 32, 3), jnp.uint8))
  assert pred['score'].shape == (1, 5) and pred['logits'].shape == (1, 5, 14)


def test_score_is_one_minus_p_normal():
  logits = jnp.array([[2.0, 0.0, -1.0], [-3.0, 1.0, 1.0]])
  p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  np.testing.assert_allclose(hybrid.clip_anomaly_score(logits), 1 - p[:, 0], rtol=1e-6)


def test_regression_target_is_constant_projection_with_stop_gradient():
  c, system = tiny_system()
  t, h = c.data.clip_len, c.model.horizon
  rng = np.random.default_rng(0)
  video = jnp.asarray(rng.integers(0, 255, (2, 2 * t + h, 32, 32, 3)), jnp.uint8)
  variables = system.init(jax.random.key(0), video)
  apply = lambda p: system.model.apply({'params': p, 'batch_stats': variables['batch_stats']},
                                       video, train=False)
  target = np.asarray(apply(variables['params'])['reg_target'])
  # Unit variance, zero mean per target: a constant prediction cannot reach zero loss.
  np.testing.assert_allclose(target.mean(-1), 0, atol=1e-4)
  np.testing.assert_allclose(target.var(-1), 1, atol=1e-2)
  # No gradient reaches any parameter through the target.
  g = jax.grad(lambda p: jnp.sum(apply(p)['reg_target'] ** 2))(variables['params'])
  assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(g))
  # The projection is a fixed orthonormal matrix, the same on every call.
  p1 = hybrid.target_projection(40, 8)
  np.testing.assert_array_equal(p1, hybrid.target_projection(40, 8))
  np.testing.assert_allclose(p1.T @ p1, np.eye(8), atol=1e-5)
  # Clip k's target is the frame k*T + T - 1 + horizon.
  feats_at = lambda frames: system.model.apply(variables, frames, train=False)['reg_target']
  shifted = video.at[:, t - 1 + h].set(0)          # change clip 0's future frame only
  changed = np.asarray(feats_at(shifted)) != target
  assert changed[:, 0].any() and not changed[:, 1].any()


def test_loss_components_and_weights():
  c, system = tiny_system()
  t, h = c.data.clip_len, c.model.horizon
  rng = np.random.default_rng(1)
  batch = {'video': jnp.asarray(rng.integers(0, 255, (4, 2 * t + h, 32, 32, 3)), jnp.uint8),
           'label': jnp.array([0, 3, 0, 7], jnp.int32)}
  variables = system.init(jax.random.key(0), batch['video'])
  loss, (m, stats) = system.loss(variables['params'], variables['batch_stats'], batch,
                                 jax.random.key(2))
  expect = 1.0 * m['reg'] + 0.5 * m['focal'] + 0.3 * m['mil'] + 0.3 * m['vae']
  np.testing.assert_allclose(loss, expect, rtol=1e-6)
  assert all(np.isfinite(float(v)) for v in m.values())
  assert jax.tree.structure(stats) == jax.tree.structure(variables['batch_stats'])
  # An all-normal batch has no MIL pairs: the MIL term is exactly 0.
  normal = dict(batch, label=jnp.zeros(4, jnp.int32))
  _, (m0, _) = system.loss(variables['params'], variables['batch_stats'], normal,
                           jax.random.key(2))
  assert float(m0['mil']) == 0.0


def test_center_features_removes_video_constant():
  """With centering, adding the same image to every frame's features cannot change scores:
  here checked through its effect: a video of identical frames gives all-zero LSTM input, so
  every clip of it scores the same as a black video's clips."""
  c, system = tiny_system(center_features=True)
  t = c.data.clip_len
  a = jnp.full((1, 2 * t, 32, 32, 3), 30, jnp.uint8)
  b = jnp.full((1, 2 * t, 32, 32, 3), 200, jnp.uint8)
  variables = system.init(jax.random.key(0), a)
  sa = system.predict(variables, a)['score']
  sb = system.predict(variables, b)['score']
  np.testing.assert_allclose(sa, sb, atol=1e-6)
