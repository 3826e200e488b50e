"""Views of a video (training augmentation and test-time augmentation) and TTA averaging."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vad_jax.data import views
from vad_jax.evaluate import tta


def _toy_predict(scale, batch):
  """Logits that depend on where things are left to right: [B, K=2, C=3] from [B, N, H, W, 1]."""
  video = batch['video'] if isinstance(batch, dict) else batch
  ramp = jnp.arange(video.shape[3], dtype=jnp.float32) / video.shape[3]
  left = (video[..., 0] * ramp).mean(axis=(2, 3))[:, :2]                # [B, 2]
  top = (video[:, :2, 0, 0, 0])                                          # [B, 2] one corner
  logits = jnp.stack([left * scale, top - left, jnp.ones_like(left)], axis=-1)
  return {'score': 1.0 - jax.nn.softmax(logits, -1)[..., 0], 'logits': logits}


def test_views_match_numpy_on_host_and_device():
  video = np.arange(2 * 3 * 4 * 5 * 1, dtype=np.float32).reshape(2, 3, 4, 5, 1)
  np.testing.assert_array_equal(views.hflip(video), video[:, :, :, ::-1])
  rolled = np.concatenate([video[:, :, -1:], video[:, :, :-1]], axis=2)       # down by 1
  rolled = np.concatenate([rolled[:, :, :, -1:], rolled[:, :, :, :-1]], axis=3)  # right by 1
  np.testing.assert_array_equal(views.shift(video), rolled)
  np.testing.assert_array_equal(views.shift(jnp.asarray(video)), rolled)
  np.testing.assert_array_equal(views.apply(video, ('hflip', 'shift')),
                                views.shift(video[:, :, :, ::-1]))


def test_tta_averages_class_probabilities_over_views():
  video = np.random.default_rng(0).uniform(size=(2, 3, 4, 6, 1)).astype(np.float32)
  out = tta.with_views(_toy_predict, tta.parse('hflip,hflip+shift'))(2.0, {'video': jnp.asarray(video)})
  outs = [_toy_predict(2.0, v) for v in (video, video[:, :, :, ::-1],
                                         views.shift(video[:, :, :, ::-1]))]
  softmax = lambda z: np.exp(z) / np.exp(z).sum(-1, keepdims=True)
  probs = np.mean([softmax(np.asarray(o['logits'])) for o in outs], axis=0)
  assert not np.allclose(outs[0]['score'], outs[1]['score'])   # the views do change the answer
  np.testing.assert_allclose(out['score'], np.mean([o['score'] for o in outs], axis=0), rtol=1e-5)
  np.testing.assert_allclose(out['score'], 1.0 - probs[..., 0], rtol=1e-5)
  np.testing.assert_allclose(out['logits'], np.log(probs), rtol=1e-5, atol=1e-6)


def test_no_views_is_the_plain_predict():
  assert tta.with_views(_toy_predict, ()) is _toy_predict


def test_parse_names_views_and_refuses_unknown_ones():
  assert tta.parse('') == ()
  assert tta.parse(' hflip , hflip+shift ') == (('hflip',), ('hflip', 'shift'))
  with pytest.raises(ValueError, match=r"eval_tta: unknown view\(s\) \['rot90'\]"):
    tta.parse('hflip,rot90')
  with pytest.raises(ValueError, match="'\\+' composes only in eval_tta"):
    views.parse('hflip+shift', 'data.augment')


def test_random_augment_draws_each_view_and_keeps_labels():
  video = np.random.default_rng(1).integers(0, 255, size=(3, 4, 5, 3), dtype=np.uint8)
  augment = views.random_augment(('hflip', 'shift'))
  seen = set()
  for seed in range(40):
    out = augment({'video': video, 'label': 7}, np.random.default_rng(seed))
    assert out['label'] == 7 and out['video'].shape == video.shape
    match = [(f, dy, dx) for f in (0, 1) for dy in (0, 1) for dx in (0, 1)
             if np.array_equal(out['video'], views.shift(video[:, :, ::-1] if f else video, dy, dx))]
    assert match
    seen.add(match[0])
  assert len(seen) == 8                       # every flip x shift phase occurs


def test_predict_step_views_the_systems_first_field_images_included():
  """make_predict_step applies eval views to `predict_fields[0]`: here an image [B, H, W, C]
  with the seed-002 4-way flips (identity, h, v, both)."""
  from types import SimpleNamespace
  from vad_jax import mesh as mesh_lib
  from vad_jax.train import step as step_lib

  def predict(variables, batch):
    x = batch['image'][..., 0]
    ramp = jnp.arange(x.shape[1] * x.shape[2], dtype=jnp.float32).reshape(x.shape[1:])
    z = (x * ramp).mean((1, 2))
    return {'logits': jnp.stack([z, -z, jnp.zeros_like(z)], -1)}

  system = SimpleNamespace(predict=predict, predict_fields=('image',))
  mesh = mesh_lib.make_mesh({'data': 1}, jax.devices()[:1])
  run = step_lib.make_predict_step(system, mesh, tta.parse('hflip,vflip,hflip+vflip'))
  state = SimpleNamespace(eval_variables=lambda: {})
  img = np.random.default_rng(2).uniform(size=(4, 3, 5, 1)).astype(np.float32)
  out = run.__wrapped__(state, {'image': jnp.asarray(img)})    # the step's function, unjitted
  softmax = lambda z: np.exp(z) / np.exp(z).sum(-1, keepdims=True)
  views_np = (img, img[:, :, ::-1], img[:, ::-1], img[:, ::-1, ::-1])
  probs = np.mean([softmax(np.asarray(predict({}, {'image': v})['logits'])) for v in views_np], 0)
  np.testing.assert_allclose(np.exp(out['logits']), probs, rtol=1e-5)
  assert not np.allclose(probs, softmax(np.asarray(predict({}, {'image': img})['logits'])))
