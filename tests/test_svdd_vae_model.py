"""Seed 001's modules: attention pooling, the convolutional VAE, and the Deep SVDD + VAE detector
(shapes, clip slicing, head wiring, stop-gradient of the feature VAE, per-clip conv VAE error)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vad_jax.models import conv_vae
from vad_jax.models.conv_vae import ConvVAE, frame_errors
from vad_jax.models.pooling import AttentionPooling
from vad_jax.models.svdd_vae import SVDDVAEDetector, clip_starts, from_config

T, N, S = 4, 10, 2                       # clip length, frames a video, overlapping stride
TINY = dict(clip_len=T, width_mult=0.1, depth_mult=0.1, depthwise_impl='xla',
            drop_connect_rate=0.0, input='rgb', lstm_hidden=8, attention_hidden=6, embed_dim=12,
            head_hidden=10, svdd_dim=5, vae_latent=3, vae_hidden=(8, 6), conv_vae=True,
            conv_channels=(4, 8), conv_latent=3)


def fill(module, *args, seed=0, **kwargs):
  """Variables of `module.init(key, *args, **kwargs)` drawn with numpy: only the shapes are traced
  (a jitted init of the detector compiles for over a minute on 2 CPU cores; the values are
  arbitrary). Kernels N(0, 1/fan_in), BatchNorm variances in [0.5, 1.5], scales near 1."""
  shapes = jax.eval_shape(lambda r: module.init(r, *args, **kwargs), jax.random.key(0))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      a = rng.standard_normal(leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))
    elif name == 'var':
      a = rng.uniform(0.5, 1.5, leaf.shape)
    elif name == 'scale':
      a = 1.0 + 0.1 * rng.standard_normal(leaf.shape)
    else:                                                   # biases, running means
      a = 0.1 * rng.standard_normal(leaf.shape)
    return jnp.asarray(a, leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, shapes)


# ----------------------------------------------------------------------------- pooling
def _np_pooling(p, x, mask=None):
  h = np.tanh(x @ p['hidden']['kernel'] + p['hidden']['bias'])
  s = (h @ p['score']['kernel'] + p['score']['bias'])[..., 0]
  if mask is not None:
    s = np.where(mask, s, -np.inf)
  e = np.exp(s - s.max(-1, keepdims=True))
  w = e / e.sum(-1, keepdims=True)
  return (w[..., None] * x).sum(1), w


def test_attention_pooling_matches_numpy_and_respects_the_mask():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((3, 5, 4)).astype(np.float32)
  mod = AttentionPooling(hidden=6)
  params = fill(mod, jnp.asarray(x))['params']
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  apply = jax.jit(lambda x, mask=None: mod.apply({'params': params}, x, mask))
  pooled, w = apply(jnp.asarray(x))
  want_pooled, want_w = _np_pooling(p, x.astype(np.float64))
  assert pooled.shape == (3, 4) and w.shape == (3, 5) and w.dtype == jnp.float32
  np.testing.assert_allclose(w, want_w, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(pooled, want_pooled, rtol=1e-5, atol=1e-5)
  assert np.ptp(np.asarray(w), axis=1).min() > 1e-4        # weights depend on the step: not uniform

  mask = np.array([[True] * 5, [True, False, True, False, False],
                   [False, False, False, True, True]])
  pooled, w = apply(jnp.asarray(x), jnp.asarray(mask))
  want_pooled, want_w = _np_pooling(p, x.astype(np.float64), mask)
  np.testing.assert_array_equal(np.asarray(w)[~mask], 0.0)  # excluded steps weigh exactly 0
  np.testing.assert_allclose(w, want_w, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(pooled, want_pooled, rtol=1e-5, atol=1e-5)
  # Changing an excluded step changes nothing.
  x2 = x.copy()
  x2[1, 3] += 10.0
  np.testing.assert_allclose(apply(jnp.asarray(x2), jnp.asarray(mask))[0], pooled, rtol=1e-6,
                             atol=1e-6)
  # A row with no kept step: zero weights, zero vector, no NaN.
  pooled, w = apply(jnp.asarray(x), jnp.zeros((3, 5), bool))
  np.testing.assert_array_equal(w, 0.0)
  np.testing.assert_array_equal(pooled, 0.0)


# ----------------------------------------------------------------------------- conv VAE
def test_conv_vae_shapes_and_layout():
  vae = ConvVAE()                                           # the seed's size: 64x64, 4 layers
  x = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
  v = jax.eval_shape(lambda r, a: vae.init(r, a, train=False), jax.random.key(0), x)
  recon, mu, logvar = jax.eval_shape(lambda v, a: vae.apply(v, a, train=False), v, x)
  assert recon.shape == (2, 64, 64, 3) and mu.shape == logvar.shape == (2, 128)
  p = v['params']
  assert [p[f'enc{i}']['kernel'].shape for i in range(4)] == [
      (4, 4, 3, 32), (4, 4, 32, 64), (4, 4, 64, 128), (4, 4, 128, 256)]
  assert p['mu']['kernel'].shape == (4 * 4 * 256, 128)     # flatten of the 4x4x256 map
  assert p['dec_in']['kernel'].shape == (128, 4 * 4 * 256)
  assert [p[f'dec{i}']['kernel'].shape[-1] for i in range(4)] == [128, 64, 32, 3]
  # 32x32, one channel, really run: tanh output in [-1, 1]; and a 32x64 frame.
  small = ConvVAE(channels=(4, 8), latent=5)
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (3, 32, 32, 1)), jnp.float32)
  v = fill(small, x, train=False)
  recon, mu, logvar = jax.jit(lambda v, x: small.apply(v, x, train=False))(v, x)
  assert recon.shape == x.shape and mu.shape == logvar.shape == (3, 5)
  assert float(jnp.abs(recon).max()) <= 1.0
  x = jax.ShapeDtypeStruct((1, 32, 64, 1), jnp.float32)
  v = jax.eval_shape(lambda r, a: small.init(r, a, train=False), jax.random.key(0), x)
  assert jax.eval_shape(lambda v, a: small.apply(v, a, train=False), v, x)[0].shape == x.shape
  assert v['params']['mu']['kernel'].shape == (8 * 16 * 8, 5)


def test_conv_vae_eval_decodes_the_mean(monkeypatch):
  vae = ConvVAE(channels=(4, 8), latent=3)
  x = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (2, 16, 16, 3)), jnp.float32)
  v = fill(vae, x, train=False)
  evaluate = jax.jit(lambda key: vae.apply(v, x, train=False, rngs={'vae': key}))
  ev = evaluate(jax.random.key(1))
  np.testing.assert_array_equal(ev[0], evaluate(jax.random.key(2))[0])   # the rng is not used
  train = lambda: jax.jit(lambda key: vae.apply(v, x, train=True, rngs={'vae': key}))
  tr = train()
  a, b = tr(jax.random.key(1)), tr(jax.random.key(2))
  np.testing.assert_allclose(a[1], ev[1], rtol=1e-5, atol=1e-6)   # mu, logvar: same either way
  assert float(jnp.abs(a[0] - b[0]).max()) > 1e-6           # training samples z
  assert float(jnp.abs(a[0] - ev[0]).max()) > 1e-6
  # Training with the sample replaced by the mean reproduces evaluation: eval decodes z = mu.
  monkeypatch.setattr(conv_vae, 'reparameterize', lambda rng, mu, logvar: mu)
  np.testing.assert_allclose(train()(jax.random.key(1))[0], ev[0], rtol=1e-6, atol=1e-6)


def test_conv_vae_odd_sizes_raise():
  vae = ConvVAE(channels=(4, 8, 16))
  for shape in ((1, 30, 32, 3), (1, 32, 36, 3)):
    with pytest.raises(ValueError, match='divisible by 8'):
      vae.init(jax.random.key(0), jnp.zeros(shape), train=False)


def test_frame_errors_match_numpy():
  rng = np.random.default_rng(2)
  recon, x = rng.uniform(-1, 1, (2, 3, 4, 5, 3)).astype(np.float32)
  mu, logvar = rng.standard_normal((2, 3, 6)).astype(np.float32)
  mse, kl = frame_errors(recon, x, mu, logvar)
  r64, x64, m64, l64 = (a.astype(np.float64) for a in (recon, x, mu, logvar))
  want_mse = np.array([((r64[i] - x64[i]) ** 2).mean() for i in range(3)])
  want_kl = np.array([-0.5 * np.sum(1 + l64[i] - m64[i] ** 2 - np.exp(l64[i])) for i in range(3)])
  assert mse.dtype == kl.dtype == jnp.float32 and mse.shape == kl.shape == (3,)
  np.testing.assert_allclose(mse, want_mse, rtol=1e-5)
  np.testing.assert_allclose(kl, want_kl, rtol=1e-5)


# ----------------------------------------------------------------------------- detector
@pytest.fixture(scope='module')
def tiny():
  """(model, variables, video [2, N, 32, 32, 3], apply(variables, video, stride) jitted)."""
  model = SVDDVAEDetector(**TINY)
  video = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, N, 32, 32, 3)), jnp.uint8)
  variables = fill(model, video[:, :T], train=False)      # running statistics not 0 / 1 either
  apply = jax.jit(lambda v, x, stride: model.apply(v, x, train=False, stride=stride),
                  static_argnums=2)
  return model, variables, video, apply


@pytest.fixture(scope='module')
def overlapping(tiny):
  model, variables, video, apply = tiny
  return apply(variables, video, S)


def test_output_shapes_training_and_overlapping_stride(tiny):
  model, variables, video, _ = tiny
  e, l, c = TINY['embed_dim'], TINY['vae_latent'], 14
  for stride, k in ((None, N // T), (S, (N - T) // S + 1)):
    out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False, stride=stride),
                         variables, video)
    want = {'logits': (2, k, c), 'binary_logit': (2, k), 'svdd_z': (2, k, TINY['svdd_dim']),
            'vae_in': (2, k, e), 'vae_recon': (2, k, e), 'vae_mu': (2, k, l),
            'vae_logvar': (2, k, l), 'attention': (2, k, T), 'conv_mse': (2, N),
            'conv_kl': (2, N), 'conv_err': (2, k)}
    assert {name: o.shape for name, o in out.items()} == want
    assert all(o.dtype == jnp.float32 for o in out.values())
  # Training mode: batch statistics update, dropout and the two VAEs' samples need their rngs.
  rngs = {'dropout': jax.random.key(1), 'vae': jax.random.key(2)}
  out, upd = jax.eval_shape(lambda v, x: model.apply(v, x, train=True, stride=S, rngs=rngs,
                                                     mutable=['batch_stats']), variables, video)
  assert {name: o.shape for name, o in out.items()} == want
  assert jax.tree.structure(upd) == jax.tree.structure({'batch_stats': variables['batch_stats']})
  np.testing.assert_array_equal(clip_starts(N, T), [0, 4])
  np.testing.assert_array_equal(clip_starts(N, T, S), [0, 2, 4, 6])
  with pytest.raises(ValueError, match='stride'):
    jax.eval_shape(lambda v, x: model.apply(v, x, train=False, stride=T + 1), variables, video)
  with pytest.raises(ValueError, match='shorter than one clip'):
    jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, video[:, :T - 1])
  half = SVDDVAEDetector(**TINY, dtype=jnp.bfloat16)       # bfloat16 compute, float32 outputs
  out = jax.eval_shape(lambda v, x: half.apply(v, x, train=False), variables, video)
  assert all(o.dtype == jnp.float32 for o in out.values())
  no_conv = SVDDVAEDetector(**dict(TINY, conv_vae=False))
  v = jax.eval_shape(lambda r, x: no_conv.init(r, x, train=False), jax.random.key(0), video)
  assert 'conv_vae' not in v['params']
  out = jax.eval_shape(lambda v, x: no_conv.apply(v, x, train=False), v, video)
  assert not any(name.startswith('conv') for name in out)


def test_heads_read_the_embedding_and_svdd_has_no_bias(tiny, overlapping):
  _, variables, _, _ = tiny
  out = jax.tree.map(lambda a: np.asarray(a, np.float64), overlapping)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables['params'])
  assert set(p['svdd']) == {'kernel'}                      # Deep SVDD: no bias term
  e = out['vae_in']                                        # = the embedding (stop-gradient only)
  assert (e >= 0).all() and (e > 0).any()                  # after ReLU
  np.testing.assert_allclose(out['svdd_z'], e @ p['svdd']['kernel'], rtol=1e-4, atol=1e-5)
  binary = e @ p['binary']['kernel'][:, 0] + p['binary']['bias'][0]
  np.testing.assert_allclose(out['binary_logit'], binary, rtol=1e-4, atol=1e-5)
  q = p['classification']
  hid = e @ q['fc1']['kernel'] + q['fc1']['bias']
  hid = (hid - hid.mean(-1, keepdims=True)) / np.sqrt(hid.var(-1, keepdims=True) + 1e-6)
  hid = np.maximum(hid * q['norm']['scale'] + q['norm']['bias'], 0)
  np.testing.assert_allclose(out['logits'], hid @ q['fc2']['kernel'] + q['fc2']['bias'],
                             rtol=1e-4, atol=1e-4)


def test_conv_vae_errors_per_frame_and_per_clip(tiny, overlapping):
  _, variables, video, _ = tiny
  out = overlapping
  # Per frame: the conv VAE on the picture scaled to [-1, 1] (not the trunk's input).
  pic = np.asarray(video, np.float32).reshape(2 * N, 32, 32, 3) / 127.5 - 1
  recon, mu, logvar = ConvVAE(TINY['conv_channels'], TINY['conv_latent']).apply(
      {'params': variables['params']['conv_vae']}, jnp.asarray(pic), train=False)
  recon, mu, logvar = (np.asarray(a, np.float64) for a in (recon, mu, logvar))
  mse = ((recon - pic) ** 2).reshape(2, N, -1).mean(-1)
  kl = -0.5 * (1 + logvar - mu ** 2 - np.exp(logvar)).sum(-1).reshape(2, N)
  np.testing.assert_allclose(out['conv_mse'], mse, rtol=1e-5)
  np.testing.assert_allclose(out['conv_kl'], kl, rtol=1e-4, atol=1e-6)
  # Per clip: the mean over the clip's own frames.
  mse = np.asarray(out['conv_mse'], np.float64)
  want = np.stack([mse[:, s:s + T].mean(-1) for s in range(0, N - T + 1, S)], axis=1)
  np.testing.assert_allclose(out['conv_err'], want, rtol=1e-6)
  assert np.ptp(want) > 0                                   # frames (and clips) differ


def test_attention_weights_sum_to_one(overlapping):
  w = np.asarray(overlapping['attention'], np.float64)
  assert (w >= 0).all()
  np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
  assert np.ptp(w, axis=-1).min() > 0                       # not constant over time


def test_each_overlapping_clip_equals_the_clip_alone(tiny, overlapping):
  _, variables, video, apply = tiny                         # 'rgb': the trunk sees frames alone
  for k, s in enumerate(clip_starts(N, T, S)):
    alone = apply(variables, video[:, s:s + T], None)
    for name, a in alone.items():
      if name in ('conv_mse', 'conv_kl'):                   # per frame: the clip's frames
        np.testing.assert_allclose(overlapping[name][:, s:s + T], a, rtol=1e-5, atol=1e-6,
                                   err_msg=name)
      else:
        np.testing.assert_allclose(overlapping[name][:, k], a[:, 0], rtol=1e-4, atol=1e-5,
                                   err_msg=f'{name} of clip {k}')


def test_feature_vae_is_stop_gradient_and_classification_reaches_the_trunk(tiny):
  model, variables, video, _ = tiny
  cls_w = jnp.asarray(np.random.default_rng(3).standard_normal((2, N // T, 14)), jnp.float32)
  run = lambda params: model.apply(dict(variables, params=params), video, train=False)

  def vae_loss(params):
    out = run(params)
    return jnp.sum((out['vae_recon'] - out['vae_in']) ** 2) + jnp.sum(
        out['vae_mu'] ** 2 + jnp.exp(out['vae_logvar']) - out['vae_logvar'])

  # The classification loss is differentiated w.r.t. the trunk's LAST layer only (plus everything
  # after it and the feature VAE): reaching it proves the path, and a backward pass through the
  # whole trunk would compile for tens of seconds.
  def cls_loss(sub, params):
    params = dict(params, **{k: v for k, v in sub.items() if k != 'head'},
                  trunk=dict(params['trunk'], head=sub['head']))
    return jnp.sum(run(params)['logits'] * cls_w)

  def grads(params):
    sub = {k: params[k] for k in ('bilstm', 'attention', 'embed', 'embed_norm', 'vae')}
    return jax.grad(vae_loss)(params), jax.grad(cls_loss)(dict(sub, head=params['trunk']['head']),
                                                          params)

  g_vae, g_cls = jax.jit(grads)(variables['params'])
  peak = lambda g: float(max(jnp.abs(x).max() for x in jax.tree.leaves(g)))
  for name in ('trunk', 'bilstm', 'attention', 'embed', 'embed_norm', 'classification', 'binary',
               'svdd', 'conv_vae'):
    assert peak(g_vae[name]) == 0.0, name                   # exactly zero, not small
  assert peak(g_vae['vae']) > 0.0
  for name in ('head', 'bilstm', 'attention', 'embed', 'embed_norm'):
    assert peak(g_cls[name]) > 0.0, name
  assert peak(g_cls['vae']) == 0.0


def test_from_config_reads_every_key():
  m = ml_collections.ConfigDict(dict(
      num_classes=7, input='motion', lstm_hidden=9, lstm_layers=3, lstm_dropout=0.1,
      attention_hidden=5, embed_dim=11, embed_dropout=0.2, head_hidden=13, head_dropout=0.4,
      svdd_dim=6, vae_latent=4, vae_hidden=[10, 8], vae_dropout=0.15, conv_vae=True,
      conv_channels=[4, 8], conv_latent=3,
      trunk=dict(width_mult=0.5, depth_mult=0.6, padding='same', depthwise_impl='xla',
                 drop_connect_rate=0.05, bn_momentum=0.9, frozen_stages=2)))
  cfg = ml_collections.ConfigDict(dict(data=dict(clip_len=6), model=m))
  model = from_config(cfg, jnp.bfloat16, jnp.float32)
  assert (model.clip_len, model.num_classes, model.input) == (6, 7, 'motion')
  assert (model.width_mult, model.depth_mult, model.padding, model.depthwise_impl,
          model.drop_connect_rate, model.bn_momentum, model.frozen_stages) == (
              0.5, 0.6, 'same', 'xla', 0.05, 0.9, 2)
  assert (model.lstm_hidden, model.lstm_layers, model.lstm_dropout, model.attention_hidden,
          model.embed_dim, model.embed_dropout, model.head_hidden, model.head_dropout) == (
              9, 3, 0.1, 5, 11, 0.2, 13, 0.4)
  assert (model.svdd_dim, model.vae_latent, model.vae_hidden, model.vae_dropout) == (
      6, 4, (10, 8), 0.15)
  assert (model.conv_vae, model.conv_channels, model.conv_latent) == (True, (4, 8), 3)
  assert model.dtype == jnp.bfloat16 and model.param_dtype == jnp.float32
  assert from_config(cfg, jnp.float32, jnp.float32, frozen_stages=0).frozen_stages == 0
  hash(model)                                               # fields are hashable (tuples)
  assert isinstance(model, nn.Module)
