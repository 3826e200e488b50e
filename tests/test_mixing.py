import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vad_jax.data import mixing

# One compile each (eager JAX compiles every primitive): the alphas and probabilities are traced,
# so every call below (all eight arguments given: a default left out is a python constant and
# another compile) shares one compiled `sample`.
sample = jax.jit(mixing.sample, static_argnames=('batch', 'height', 'width'))
apply = jax.jit(mixing.apply)
B, H, W = 4, 8, 10


def _sample_many(n, seed, *args):
  keys = np.asarray(jax.random.split(jax.random.PRNGKey(seed), n))
  return jax.device_get([sample(k, B, H, W, *args) for k in keys])


def _cutmix_params(x_shape, alpha=1.0):
  """A seed whose box is neither empty nor the whole image."""
  for s in range(50):
    p = sample(jax.random.PRNGKey(s), x_shape[0], x_shape[-3], x_shape[-2], 0.0, alpha, 0.5, 1.0)
    area = int(np.asarray(p.mask).sum())
    if 0 < area < x_shape[-3] * x_shape[-2]:
      return p
  raise AssertionError('no proper box in 50 seeds')


def test_mixup_matches_formula():
  x = np.random.default_rng(0).uniform(0, 255, (B, H, W, 3)).astype(np.uint8)
  p = sample(jax.random.PRNGKey(1), B, H, W, 0.4, 0.0, 0.5, 1.0)
  lam, perm = float(p.lam), np.asarray(p.perm)
  assert not bool(p.is_cutmix) and not np.asarray(p.mask).any()
  assert 0.0 < lam < 1.0 and sorted(perm) == list(range(B)) and (perm != np.arange(B)).any()
  out = np.asarray(apply(x, p))
  assert out.dtype == np.float32 and out.shape == x.shape
  xf = x.astype(np.float64)
  ref = np.empty_like(xf)
  for i in range(B):
    ref[i] = lam * xf[i] + (1 - lam) * xf[perm[i]]
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-3)


def test_cutmix_box_pixels_and_lam():
  x = np.random.default_rng(1).normal(size=(B, H, W, 2)).astype(np.float32)
  p = _cutmix_params(x.shape)
  mask, perm = np.asarray(p.mask), np.asarray(p.perm)
  assert bool(p.is_cutmix) and mask.shape == (H, W)
  rows, cols = mask.any(1), mask.any(0)
  np.testing.assert_array_equal(mask, np.outer(rows, cols))  # one axis-aligned rectangle
  assert float(p.lam) == pytest.approx(1.0 - mask.sum() / (H * W), rel=1e-6, abs=1e-7)
  out = np.asarray(apply(x, p))
  for i in range(B):
    np.testing.assert_array_equal(out[i][mask], x[perm[i]][mask])
    np.testing.assert_array_equal(out[i][~mask], x[i][~mask])


def test_cutmix_same_box_on_every_frame():
  x = np.random.default_rng(2).uniform(0, 255, (B, 3, H, W, 3)).astype(np.uint8)
  p = _cutmix_params(x.shape)
  mask, perm = np.asarray(p.mask), np.asarray(p.perm)
  out = np.asarray(apply(x, p))
  assert out.shape == x.shape and out.dtype == np.float32
  for i in range(B):
    for t in range(3):
      np.testing.assert_array_equal(out[i, t][mask], x[perm[i], t][mask].astype(np.float32))
      np.testing.assert_array_equal(out[i, t][~mask], x[i, t][~mask].astype(np.float32))


@pytest.mark.parametrize('alphas,prob', [((0.0, 0.0), 1.0), ((0.4, 1.0), 0.0), ((0.0, 1.0), 0.0)])
def test_identity_when_disabled(alphas, prob):
  x = np.random.default_rng(3).normal(size=(B, 2, H, W, 3)).astype(np.float32)
  p = sample(jax.random.PRNGKey(4), B, H, W, *alphas, 0.5, prob)
  assert float(p.lam) == 1.0 and not bool(p.is_cutmix) and not np.asarray(p.mask).any()
  np.testing.assert_array_equal(np.asarray(p.perm), np.arange(B))
  np.testing.assert_array_equal(np.asarray(apply(x, p)), x)


def test_mix_batch_fields_and_determinism_under_jit():
  cfg = ml_collections.ConfigDict(
      dict(mixup_alpha=0.4, cutmix_alpha=1.0, switch_prob=0.5, prob=1.0))
  step = jax.jit(lambda b, r: mixing.mix_batch(b, r, 'video', cfg))
  rng = np.random.default_rng(5)
  batch = {'video': rng.uniform(0, 255, (B, 2, H, W, 3)).astype(np.uint8),
           'label': np.array([3, 1, 0, 2], np.int32), 'index': np.arange(B)}
  for s in range(4):
    key = jax.random.PRNGKey(s)
    out = jax.device_get(step(batch, key))
    again = jax.device_get(step(batch, key))
    for k in out:
      np.testing.assert_array_equal(out[k], again[k])
    p = sample(key, B, H, W, 0.4, 1.0, 0.5, 1.0)
    np.testing.assert_array_equal(out['video'], np.asarray(apply(batch['video'], p)))
    assert out['label_b'].dtype == np.int32 and out['mix_lam'].dtype == np.float32
    np.testing.assert_array_equal(out['label_b'], batch['label'][np.asarray(p.perm)])
    np.testing.assert_array_equal(out['mix_lam'], np.full(B, float(p.lam), np.float32))
    np.testing.assert_array_equal(out['label'], batch['label'])
    np.testing.assert_array_equal(out['index'], batch['index'])
  other = jax.device_get(step(batch, jax.random.PRNGKey(99)))
  assert not np.array_equal(other['video'], out['video'])


def test_mix_batch_disabled_is_identity():
  cfg = dict(mixup_alpha=0.0, cutmix_alpha=0.0, switch_prob=0.5, prob=1.0)
  batch = {'image': np.random.default_rng(6).normal(size=(B, H, W, 3)).astype(np.float32),
           'label': np.array([3, 1, 0, 2])}
  out = jax.device_get(jax.jit(lambda b, r: mixing.mix_batch(b, r, 'image', cfg))(
      batch, jax.random.PRNGKey(0)))
  np.testing.assert_array_equal(out['image'], batch['image'])
  np.testing.assert_array_equal(out['label_b'], batch['label'])
  np.testing.assert_array_equal(out['mix_lam'], np.ones(B, np.float32))


def test_mixed():
  a, b = np.array([1.0, 2.0, 4.0]), np.array([3.0, 0.0, 1.0])
  lam = np.array([0.25, 1.0, 0.5])
  np.testing.assert_allclose(np.asarray(mixing.mixed(jnp.asarray(a), jnp.asarray(b), lam)),
                             [2.5, 2.0, 2.5])


def test_statistics_over_seeds():
  n = 1500
  mix = _sample_many(n, 0, 0.4, 0.0, 0.5, 1.0)
  lam = np.array([p.lam for p in mix])
  assert lam.mean() == pytest.approx(0.5, abs=0.04)  # Beta(a, a) has mean 1/2
  assert lam.std() == pytest.approx(np.sqrt(1 / (4 * (2 * 0.4 + 1))), abs=0.04)
  assert not any(p.is_cutmix for p in mix)
  both = _sample_many(n, 1, 0.4, 1.0, 0.3, 0.8)
  cut = np.array([p.is_cutmix for p in both])
  lam = np.array([p.lam for p in both])
  unmixed = np.array([np.array_equal(p.perm, np.arange(B)) for p in both]) & (lam == 1.0)
  assert unmixed.mean() == pytest.approx(0.2, abs=0.04)  # 1 - prob
  assert cut.mean() == pytest.approx(0.8 * 0.3, abs=0.04)  # prob * switch_prob
  area = np.array([p.mask.mean() for p in both])
  np.testing.assert_allclose(lam[cut], 1.0 - area[cut], rtol=1e-6, atol=1e-7)
  assert np.all(area[~cut] == 0)
  # The box geometry is timm's rand_bbox: its mean area under lam ~ Beta(1, 1), simulated.
  assert area[cut].mean() == pytest.approx(_timm_area(1.0, 200_000), abs=0.03)


def _timm_area(alpha, n):
  """Mean box area fraction of timm's rand_bbox (verbatim arithmetic) for lam ~ Beta(a, a)."""
  rng = np.random.default_rng(0)
  lam = rng.beta(alpha, alpha, n)
  ratio = np.sqrt(1 - lam)
  cut_h, cut_w = (H * ratio).astype(int), (W * ratio).astype(int)
  cy, cx = rng.integers(0, H, n), rng.integers(0, W, n)
  yl, yh = np.clip(cy - cut_h // 2, 0, H), np.clip(cy + cut_h // 2, 0, H)
  xl, xh = np.clip(cx - cut_w // 2, 0, W), np.clip(cx + cut_w // 2, 0, W)
  return float(np.mean((yh - yl) * (xh - xl) / (H * W)))
