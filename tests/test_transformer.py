"""Relative-position Transformer: shapes, translation invariance of the bias, any length."""

import jax
import jax.numpy as jnp
import numpy as np

from vad_jax.models.transformer import RelativePositionBias, RelativeTransformer, sinusoid


def test_sinusoid_matches_formula():
  enc = np.asarray(sinusoid(jnp.array([0, 3, -5]), 8))
  for row, d in zip(enc, [0, 3, -5]):
    for i in range(4):
      w = 1.0 / 10000 ** (2 * i / 8)
      np.testing.assert_allclose(row[2 * i], np.sin(d * w), atol=1e-6)
      np.testing.assert_allclose(row[2 * i + 1], np.cos(d * w), atol=1e-6)


def test_bias_depends_only_on_offset_and_any_length():
  mod = RelativePositionBias(num_heads=3, encoding_dim=16)
  params = mod.init(jax.random.key(0), 7)
  b7 = np.asarray(mod.apply(params, 7))            # [H, 7, 7]
  b20 = np.asarray(mod.apply(params, 20))          # longer than anything seen at init
  assert b7.shape == (3, 7, 7) and b20.shape == (3, 20, 20)
  # Shifting both positions by s leaves the bias unchanged.
  for s in range(1, 13):
    np.testing.assert_allclose(b20[:, s:s + 7, s:s + 7], b7, atol=1e-6)
  # And it is a genuine function of the offset: different offsets, different biases.
  assert not np.allclose(b20[:, 0, 1], b20[:, 0, 2])


def test_transformer_shapes_and_param_count():
  mod = RelativeTransformer(num_layers=2, num_heads=8, ff_dim=1024, dropout=0.3)
  x = jnp.ones((2, 16, 512))
  params = jax.jit(lambda k: mod.init(k, x, train=False))(jax.random.key(0))
  apply = jax.jit(mod.apply, static_argnames='train')
  y = apply(params, x, train=False)
  assert y.shape == (2, 16, 512)
  # Per layer: q,k,v,out 4*(512*512+512); rel-bias 64*8; FFN 512*1024+1024+1024*512+512; 2 LN.
  per_layer = 4 * (512 * 512 + 512) + 64 * 8 + (512 * 1024 + 1024 + 1024 * 512 + 512) + 2 * 1024
  n = sum(p.size for p in jax.tree.leaves(params))
  assert n == 2 * per_layer == 4_206_592
  # Works for a different clip length with the same parameters.
  assert apply(params, jnp.ones((1, 5, 512)), train=False).shape == (1, 5, 512)
  # Dropout is active in training only.
  y1 = apply(params, x, train=True, rngs={'dropout': jax.random.key(1)})
  assert not np.allclose(y1, y)
