"""Seed 002 multi-head classifier and its CBAM attention, checked against numpy.

The whole model is initialised from numpy (shapes by `jax.eval_shape`): a jitted `init` of even
the tiny trunk compiles for ~15 s on 2 CPU cores, and the values only need to be generic.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vad_jax.models.cbam import CBAM, ChannelAttention, SpatialAttention
from vad_jax.models.efficientnet import (EfficientNet, IMAGENET_MEAN, IMAGENET_STD, count_params,
                                        feature_dim)
from vad_jax.models.multihead import MultiHeadClassifier, from_config, head_param_count

TINY = dict(width_mult=0.1, depth_mult=0.1, depthwise_impl='xla', drop_connect_rate=0.0,
            dropout=0.0, fusion_dim=16, proj_hidden=8, proj_dim=4)
EPS = 1e-5  # CBAM / fusion BatchNorm epsilon


def _numpy_variables(shapes, seed=0):
  """Variables of the given ShapeDtypeStruct tree: He-normal kernels, random biases and BN
  affine terms, BN running statistics (mean ~ N(0, .1), var ~ U(.5, 2))."""
  rng = np.random.default_rng(seed)

  def fill(path, s):
    name = jax.tree_util.keystr(path)
    shape = s.shape
    if name.endswith("['var']"):
      return rng.uniform(0.5, 2.0, shape).astype(np.float32)
    if name.endswith("['mean']"):
      return (0.1 * rng.standard_normal(shape)).astype(np.float32)
    if name.endswith("['scale']"):
      return rng.uniform(0.8, 1.2, shape).astype(np.float32)
    if name.endswith("['bias']"):
      return (0.1 * rng.standard_normal(shape)).astype(np.float32)
    fan_in = int(np.prod(shape[:-1]))
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
  return jax.tree_util.tree_map_with_path(fill, shapes)


def _init(module, *args, seed=0, **kwargs):
  shapes = jax.eval_shape(lambda *a: module.init(jax.random.PRNGKey(0), *a, **kwargs), *args)
  return _numpy_variables(shapes, seed)


def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def _conv_same(x, k, b=None):
  """numpy stride-1 cross-correlation, zero SAME padding (odd kernels). x [N,H,W,I], k [a,b,I,O]."""
  ka, kb = k.shape[:2]
  xp = np.pad(x, ((0, 0), (ka // 2, ka // 2), (kb // 2, kb // 2), (0, 0)))
  h, w = x.shape[1:3]
  out = sum(np.einsum('nhwi,io->nhwo', xp[:, i:i + h, j:j + w], k[i, j])
            for i in range(ka) for j in range(kb))
  return out if b is None else out + b


def _bn_eval(x, p, s):
  return (x - s['mean']) / np.sqrt(s['var'] + EPS) * p['scale'] + p['bias']


def _dense(x, p):
  return x @ np.asarray(p['kernel'], np.float64) + np.asarray(p['bias'], np.float64)


def _np_tree(t):
  return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), t)


# -- attention modules ----------------------------------------------------------------------------

def test_channel_attention_matches_numpy():
  x = np.random.default_rng(1).standard_normal((3, 4, 5, 40)).astype(np.float32)
  m = ChannelAttention(reduction=4, min_hidden=3)
  v = _init(m, x)
  p = _np_tree(v['params'])
  assert p['fc1']['kernel'].shape == (40, 10) and p['fc2']['kernel'].shape == (10, 40)
  wide = jax.eval_shape(lambda x: ChannelAttention().init(jax.random.PRNGKey(0), x), x)
  assert wide['params']['fc1']['kernel'].shape == (40, 8)                      # max(40 // 16, 8)
  y, a = jax.jit(m.apply)(v, x)
  mlp = lambda u: _dense(np.maximum(_dense(u, p['fc1']), 0), p['fc2'])
  xd = x.astype(np.float64)
  want_a = _sigmoid(mlp(xd.mean((1, 2))) + mlp(xd.max((1, 2))))
  np.testing.assert_allclose(a, want_a, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(y, xd * want_a[:, None, None, :], rtol=1e-5, atol=1e-6)
  assert a.shape == (3, 40) and a.dtype == jnp.float32


def _spatial_numpy(x, p, s, train):
  """SpatialAttention in numpy; train=True normalises with the batch's (biased) statistics and
  returns them too."""
  x = x.astype(np.float64)
  z = np.concatenate([x.mean(-1, keepdims=True), x.max(-1, keepdims=True)], -1)
  stats = []
  for i in range(2):
    z = _conv_same(z, p[f'conv{i}']['kernel'])
    if train:
      mu, var = z.mean((0, 1, 2)), z.var((0, 1, 2))
      stats.append((mu, var))
      z = _bn_eval(z, p[f'bn{i}'], {'mean': mu, 'var': var})
    else:
      z = _bn_eval(z, p[f'bn{i}'], s[f'bn{i}'])
    z = np.maximum(z, 0)
  a = _sigmoid(_conv_same(z, p['conv2']['kernel'], p['conv2']['bias']))[..., 0]
  return x * a[..., None], a, stats


def test_spatial_attention_matches_numpy_eval_and_train():
  x = np.random.default_rng(2).standard_normal((2, 6, 7, 5)).astype(np.float32)
  m = SpatialAttention(hidden=4, kernel=5, bn_momentum=0.8)
  v = _init(m, x, train=False)
  p, s = _np_tree(v['params']), _np_tree(v['batch_stats'])
  assert p['conv0']['kernel'].shape == (5, 5, 2, 4) and p['conv1']['kernel'].shape == (3, 3, 4, 4)
  assert p['conv2']['kernel'].shape == (1, 1, 4, 1) and 'bias' not in p['conv0']

  y, a = jax.jit(lambda v, x: m.apply(v, x, train=False))(v, x)
  want_y, want_a, _ = _spatial_numpy(x, p, s, train=False)
  np.testing.assert_allclose(a, want_a, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-5)
  assert a.shape == (2, 6, 7)

  (y, a), upd = jax.jit(lambda v, x: m.apply(v, x, train=True, mutable=['batch_stats']))(v, x)
  want_y, want_a, stats = _spatial_numpy(x, p, s, train=True)
  np.testing.assert_allclose(a, want_a, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(y, want_y, rtol=1e-4, atol=1e-5)
  for i, (mu, var) in enumerate(stats):     # running = momentum * old + (1 - momentum) * batch
    new = upd['batch_stats'][f'bn{i}']
    np.testing.assert_allclose(new['mean'], 0.8 * s[f'bn{i}']['mean'] + 0.2 * mu, rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(new['var'], 0.8 * s[f'bn{i}']['var'] + 0.2 * var, rtol=1e-4,
                               atol=1e-5)


def test_cbam_is_channel_then_spatial():
  x = np.random.default_rng(3).standard_normal((2, 3, 3, 24)).astype(np.float32)
  m = CBAM(reduction=4, min_hidden=2, spatial_hidden=3, spatial_kernel=3)
  v = _init(m, x, train=False)

  @jax.jit
  def run(v, x):
    y, att = m.apply(v, x, train=False)
    xc, a_c = ChannelAttention(4, 2).apply({'params': v['params']['channel']}, x)
    ys, a_s = SpatialAttention(3, 3).apply(
        {'params': v['params']['spatial'], 'batch_stats': v['batch_stats']['spatial']}, xc,
        train=False)
    return y, att, xc, a_c, ys, a_s
  y, att, xc, a_c, ys, a_s = run(v, x)
  np.testing.assert_allclose(att['channel'], a_c, rtol=1e-6)
  np.testing.assert_allclose(att['spatial'], a_s, rtol=1e-6)
  np.testing.assert_allclose(y, ys, rtol=1e-6)
  assert not np.allclose(y, xc)              # the spatial map is not trivially 1


# -- the classifier -------------------------------------------------------------------------------

@pytest.mark.parametrize('hw,cells', [(32, 1), (64, 2)])
def test_output_shapes(hw, cells):
  m = MultiHeadClassifier(**TINY)
  x = jax.ShapeDtypeStruct((3, hw, hw, 3), jnp.uint8)
  shapes = jax.eval_shape(lambda x: m.init(jax.random.PRNGKey(0), x, train=False), x)
  out = jax.eval_shape(lambda v, x: m.apply(v, x, train=False), shapes, x)
  c = feature_dim(0.1)
  want = {'logits': (3, 14), 'binary_logits': (3, 2), 'type_logits': (3, 13),
          'projection': (3, 4), 'confidence_logit': (3,), 'features': (3, 16),
          'channel_attention': (3, c), 'spatial_attention': (3, cells, cells)}
  assert {k: v.shape for k, v in out.items()} == want
  assert all(v.dtype == jnp.float32 for v in out.values())
  # bfloat16 compute still returns float32
  out16 = jax.eval_shape(lambda v, x: m.clone(dtype=jnp.bfloat16).apply(v, x, train=False),
                         shapes, x)
  assert all(v.dtype == jnp.float32 for v in out16.values())


def test_param_count_of_heads():
  F, C, Ph, P = 24, 14, 10, 6
  m = MultiHeadClassifier(**{**TINY, 'fusion_dim': F, 'proj_hidden': Ph, 'proj_dim': P})
  shapes = jax.eval_shape(lambda x: m.init(jax.random.PRNGKey(0), x, train=False),
                          jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.uint8))
  p = shapes['params']
  heads = ('binary', 'type', 'full', 'proj_hidden', 'proj_out', 'confidence')
  want = (F * 2 + 2) + (F * 13 + 13) + (F * 14 + 14) + (F * Ph + Ph) + (Ph * P + P) + (F + 1)
  assert sum(count_params(p[h]) for h in heads) == want == head_param_count(F, C, Ph, P)
  c = feature_dim(0.1)
  assert count_params(p['fusion']) == 2 * c * F + F and count_params(p['fusion_bn']) == 2 * F
  hid = max(c // 16, 8)
  assert count_params(p['cbam']) == ((c * hid + hid) + (hid * c + c)          # channel MLP
                                     + 7 * 7 * 2 * 16 + 2 * 16 + 3 * 3 * 16 * 16 + 2 * 16
                                     + 16 + 1)                                  # spatial convs + BN
  assert set(p) == {'trunk', 'cbam', 'fusion', 'fusion_bn', *heads}


def test_from_config_reads_keys():
  cfg = ml_collections.ConfigDict({
      'trunk': {'width_mult': 0.1, 'depth_mult': 0.2, 'padding': 'same', 'depthwise_impl': 'xla',
                'drop_connect_rate': 0.1, 'bn_momentum': 0.95},
      'cbam_reduction': 8, 'spatial_hidden': 12, 'fusion_dim': 32, 'dropout': 0.4,
      'proj_hidden': 20, 'proj_dim': 10, 'bn_momentum': 0.8})
  m = from_config(cfg, 5, jnp.bfloat16, jnp.float32)
  assert (m.width_mult, m.depth_mult, m.padding, m.depthwise_impl, m.drop_connect_rate,
          m.bn_momentum) == (0.1, 0.2, 'same', 'xla', 0.1, 0.95)
  assert (m.cbam_reduction, m.spatial_hidden, m.fusion_dim, m.dropout, m.proj_hidden,
          m.proj_dim, m.head_bn_momentum) == (8, 12, 32, 0.4, 20, 10, 0.8)
  assert (m.num_classes, m.dtype, m.spatial_kernel) == (5, jnp.bfloat16, 7)


def test_fusion_heads_and_batch_stats_against_numpy():
  """From the CBAM output (captured), numpy rebuilds GAP+GMP -> fusion -> BN -> heads, in eval
  mode with running statistics and in train mode with batch statistics (which it checks the
  update of); the trunk feeds CBAM the preprocessed image."""
  m = MultiHeadClassifier(**TINY)
  x = np.random.default_rng(4).integers(0, 256, (4, 48, 48, 3)).astype(np.uint8)   # 2x2 cells
  v = _init(m, x, train=False)

  @jax.jit
  def run(v, x):
    capture = lambda mdl, name: mdl.name in ('cbam', 'trunk') and name == '__call__'
    ev, ei = m.apply(v, x, train=False, capture_intermediates=capture, mutable=['intermediates'])
    tr, ti = m.apply(v, x, train=True, capture_intermediates=capture,
                     mutable=['intermediates', 'batch_stats'])
    trunk_in = (x / 255.0 - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
    trunk = EfficientNet(**{k: TINY[k] for k in ('width_mult', 'depth_mult', 'depthwise_impl')},
                         pool=False)
    trunk_vars = {'params': v['params']['trunk'], 'batch_stats': v['batch_stats']['trunk']}
    want_map = trunk.apply(trunk_vars, trunk_in, train=False)
    return ev, ei['intermediates'], tr, ti, want_map
  ev, ei, tr, ti, want_map = run(v, x)
  p, s = _np_tree(v['params']), _np_tree(v['batch_stats'])

  # the trunk sees the ImageNet-normalised image and returns its unpooled feature map
  feat_map = np.asarray(ei['trunk']['__call__'][0], np.float64)
  assert feat_map.shape == (4, 2, 2, feature_dim(0.1))
  np.testing.assert_allclose(feat_map, want_map, rtol=1e-4, atol=1e-4)

  def heads(h):
    proj = _dense(np.maximum(_dense(h, p['proj_hidden']), 0), p['proj_out'])
    return {'logits': _dense(h, p['full']), 'binary_logits': _dense(h, p['binary']),
            'type_logits': _dense(h, p['type']), 'projection': proj,
            'confidence_logit': _dense(h, p['confidence'])[:, 0]}

  for out, inter, train in ((ev, ei, False), (tr, ti['intermediates'], True)):
    y, att = inter['cbam']['__call__'][0]
    y = np.asarray(y, np.float64)
    mean, mx = y.mean((1, 2)), y.max((1, 2))
    assert np.abs(mean - mx).max() > 1e-2            # GAP and GMP differ: the check has teeth
    z = _dense(np.concatenate([mean, mx], -1), p['fusion'])
    if train:
      stats = {'mean': z.mean(0), 'var': z.var(0)}
      new = ti['batch_stats']['fusion_bn']
      np.testing.assert_allclose(new['mean'], 0.9 * s['fusion_bn']['mean'] + 0.1 * stats['mean'],
                                 rtol=1e-4, atol=1e-5)
      np.testing.assert_allclose(new['var'], 0.9 * s['fusion_bn']['var'] + 0.1 * stats['var'],
                                 rtol=1e-4, atol=1e-4)
    else:
      stats = s['fusion_bn']
    h = np.maximum(_bn_eval(z, p['fusion_bn'], stats), 0)
    np.testing.assert_allclose(out['features'], h, rtol=2e-4, atol=2e-5)
    for k, want in heads(h).items():
      np.testing.assert_allclose(out[k], want, rtol=2e-4, atol=2e-5, err_msg=k)
    np.testing.assert_allclose(out['channel_attention'], att['channel'], rtol=1e-6)
    np.testing.assert_allclose(out['spatial_attention'], att['spatial'], rtol=1e-6)

  # train mode updates every BatchNorm's running statistics (trunk, CBAM, fusion)
  new = ti['batch_stats']
  for path in (('trunk', 'head', 'bn'), ('cbam', 'spatial', 'bn1'), ('fusion_bn',)):
    a, b = new, v['batch_stats']
    for k in path:
      a, b = a[k], b[k]
    assert not np.allclose(a['mean'], b['mean']), path
