"""Seed 003 violence model: Flax ViolenceDetector == the seed's Keras 3 model (JAX backend).

Covers inference and training-mode (batch statistics) parity through ``violence_from_keras``,
Keras' LSTM dropout semantics (masks extracted from our cell are fed to a Keras LSTM), the
parameter count and the focal loss against ``keras.losses.CategoricalFocalCrossentropy``.
"""

import os

os.environ['KERAS_BACKEND'] = 'jax'

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip('keras')

from vad_jax.convert.keras import violence_from_keras  # noqa: E402
from vad_jax.losses.focal import softmax_focal_loss  # noqa: E402
from vad_jax.models import recurrent  # noqa: E402
from vad_jax.models.efficientnet import count_params  # noqa: E402
from vad_jax.models.recurrent import keras_bidirectional_lstm, keras_lstm  # noqa: E402
from vad_jax.models.violence import ViolenceDetector, from_config  # noqa: E402

T, F, B = 20, 4096, 4
SEED_RATES = dict(compress=0.25, lstm=(0.35, 0.35, 0.30), rec=(0.20, 0.20, 0.15),
                  dense=(0.35, 0.25))
ZERO_RATES = dict(compress=0.0, lstm=(0.0,) * 3, rec=(0.0,) * 3, dense=(0.0, 0.0))

# Trainable parameters of the seed model, by hand: Dense in*out+out, BatchNorm 2*C (gamma, beta),
# Bidirectional LSTM 2 * 4*(in*h + h*h + h).
_LSTM = lambda fin, h: 2 * 4 * (fin * h + h * h + h)
SEED_TRAINABLE = ((4096 * 512 + 512) + 2 * 512         # compress + BN
                  + _LSTM(512, 96) + 2 * 192           # lstm0 + BN
                  + _LSTM(192, 96) + 2 * 192           # lstm1 + BN
                  + _LSTM(192, 64) + 2 * 128           # lstm2 + BN
                  + (128 * 1 + 1)                      # attention score
                  + (128 * 128 + 128) + 2 * 128        # dense0 + BN
                  + (128 * 64 + 64) + 2 * 64           # dense1 + BN
                  + (64 * 2 + 2))                      # logits
SEED_BN_STATS = 2 * (512 + 192 + 192 + 128 + 128 + 64)  # moving mean + variance
assert SEED_TRAINABLE == 2_946_371 and SEED_BN_STATS == 2_432


def build_keras_violence(rates, t=T, f=F):
  """The seed's Keras model (softmax output), with the given dropout rates."""
  L = keras.layers
  inp = keras.Input((t, f))
  x = L.Dense(512, activation='relu')(inp)
  x = L.BatchNormalization()(x)
  x = L.Dropout(rates['compress'])(x)
  bilstm = lambda h, i: L.Bidirectional(L.LSTM(h, return_sequences=True, dropout=rates['lstm'][i],
                                               recurrent_dropout=rates['rec'][i]))
  x1 = L.BatchNormalization()(bilstm(96, 0)(x))
  x = L.BatchNormalization()(bilstm(96, 1)(x1))
  x = L.Add()([x, x1])
  x = L.BatchNormalization()(bilstm(64, 2)(x))
  a = L.Dense(1, activation='tanh')(x)
  a = L.Flatten()(a)
  a = L.Activation('softmax')(a)
  a = L.RepeatVector(128)(a)
  a = L.Permute((2, 1))(a)
  x = L.Multiply()([x, a])
  x = L.Lambda(lambda v: keras.ops.sum(v, axis=1), output_shape=(128,))(x)
  for n, r in zip((128, 64), rates['dense']):
    x = L.Dense(n, activation='relu')(x)
    x = L.BatchNormalization()(x)
    x = L.Dropout(r)(x)
  out = L.Dense(2, activation='softmax')(x)
  return keras.Model(inp, out)


@pytest.fixture(scope='module')
def keras_seed(fast_keras_init):
  m = build_keras_violence(SEED_RATES)
  rng = np.random.default_rng(0)
  for layer in m.layers:
    w = layer.get_weights()
    if isinstance(layer, keras.layers.BatchNormalization):
      g, b, mu, var = w
      layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                         rng.normal(0, 0.1, mu.shape), rng.uniform(0.5, 1.5, var.shape)])
    elif w:  # keep Keras' kernels (glorot / orthogonal), randomise the biases
      layer.set_weights([a if a.ndim > 1 else rng.normal(0, 0.1, a.shape) for a in w])
  k, b = m.layers[-1].get_weights()  # output Dense: spread the probabilities away from 0.5
  m.layers[-1].set_weights([rng.normal(0, 0.15, k.shape), b])
  return m


@pytest.fixture(scope='module')
def features():
  rng = np.random.default_rng(1)  # a per-clip offset makes the clips differ beyond noise
  return (rng.normal(size=(B, T, F)) + rng.normal(size=(B, 1, F))).astype(np.float32)


def _max_err(a, b):
  return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def keras_call(model, x, training):
  """Keras' own jitted forward (what fit/predict run; the eager call does the same maths but
  compiles op by op, ~4x slower here). Writes the updated BatchNorm statistics back."""
  tv = [v.value for v in model.trainable_variables]
  ntv = [v.value for v in model.non_trainable_variables]
  out, ntv = jax.jit(lambda a, b, x: model.stateless_call(a, b, x, training=training))(tv, ntv, x)
  for v, val in zip(model.non_trainable_variables, ntv):
    v.assign(val)
  return np.asarray(out)


def test_inference_parity(keras_seed, features):
  ref = keras_call(keras_seed, features, training=False)
  variables = violence_from_keras(keras_seed)
  model = ViolenceDetector()
  out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, features)
  probs = jax.nn.softmax(out['logits'], axis=-1)
  err = _max_err(probs, ref)
  margin = out['logits'][:, 1] - out['logits'][:, 0]
  margin_err = _max_err(margin, np.log(ref[:, 1] / ref[:, 0]))
  print(f'violence inference parity: max abs err {err:.2e} (logit margin {margin_err:.2e}), '
        f'p(class 1) {ref[:, 1].round(3)}')
  assert out['logits'].shape == (B, 2) and out['logits'].dtype == jnp.float32
  assert out['attention'].shape == (B, T)
  np.testing.assert_allclose(out['attention'].sum(-1), 1.0, atol=1e-5)
  assert np.ptp(ref[:, 1]) > 0.05  # the outputs are neither saturated nor constant
  assert err < 1e-4 and margin_err < 1e-4


def test_training_parity_without_dropout(keras_seed, features):
  """train=True: BatchNorm on batch statistics, moving averages updated as in Keras."""
  kmodel = build_keras_violence(ZERO_RATES)
  kmodel.set_weights(keras_seed.get_weights())
  variables = violence_from_keras(kmodel)
  ref = keras_call(kmodel, features, training=True)
  ref_stats = violence_from_keras(kmodel)['batch_stats']  # after the call

  model = ViolenceDetector(compress_dropout=0.0, lstm_dropout=(0.0,) * 3,
                           recurrent_dropout=(0.0,) * 3, dense_dropout=(0.0, 0.0))
  out, new = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']))(
      variables, features)
  err = _max_err(jax.nn.softmax(out['logits'], axis=-1), ref)
  stat_err = max(_max_err(a, b) for a, b in zip(jax.tree.leaves(new['batch_stats']),
                                                  jax.tree.leaves(ref_stats)))
  moved = max(_max_err(a, b) for a, b in zip(jax.tree.leaves(variables['batch_stats']),
                                               jax.tree.leaves(ref_stats)))
  print(f'violence training parity: max abs err {err:.2e}, batch_stats {stat_err:.2e} '
        f'(moved by up to {moved:.2e})')
  assert jax.tree.structure(new['batch_stats']) == jax.tree.structure(ref_stats)
  assert moved > 1e-3  # the call did update the statistics
  assert err < 1e-4
  assert stat_err < 1e-5


def test_param_count(keras_seed):
  shapes = jax.eval_shape(lambda: ViolenceDetector().init(
      jax.random.key(0), jnp.zeros((1, T, F)), train=False))
  assert count_params(shapes['params']) == SEED_TRAINABLE
  converted = violence_from_keras(keras_seed)  # the converter fills exactly our variables
  assert (jax.tree.map(lambda a: tuple(a.shape), converted)
          == jax.tree.map(lambda a: tuple(a.shape), shapes))
  assert count_params(shapes['batch_stats']) == SEED_BN_STATS
  assert keras_seed.count_params() == SEED_TRAINABLE + SEED_BN_STATS


def _lstm_params_to_keras(p):
  """Our cell params -> Keras [kernel, recurrent_kernel, bias] (gate order i, f, c, o)."""
  g = 'ifgo'
  return [np.concatenate([p[f'i{c}']['kernel'] for c in g], -1),
          np.concatenate([p[f'h{c}']['kernel'] for c in g], -1),
          np.concatenate([p[f'h{c}']['bias'] for c in g], -1)]


@pytest.mark.parametrize('rate,rec_rate', [(0.3, 0.2), (0.4, 0.0), (0.0, 0.3)])
def test_lstm_dropout_matches_keras(fast_keras_init, monkeypatch, rate, rec_rate):
  """Keras semantics: one mask per sequence, the same at every step, per gate when
  recurrent_dropout > 0; a Keras LSTM fed our masks agrees."""
  b, t, f, h = 3, 6, 5, 4
  x = np.random.default_rng(2).normal(size=(b, t, f)).astype(np.float32)
  params = jax.jit(keras_lstm(h).init)(jax.random.key(0), x)
  params = jax.tree.map(lambda a: a + 0.1 * np.random.default_rng(3).normal(size=a.shape), params)
  records = []
  draw = recurrent.keras_dropout_masks

  def spy(*args, **kwargs):
    masks = draw(*args, **kwargs)
    jax.debug.callback(lambda m: records.append(jax.tree.map(np.asarray, m)), masks)
    return masks

  monkeypatch.setattr(recurrent, 'keras_dropout_masks', spy)
  layer = keras_lstm(h, dropout=rate, recurrent_dropout=rec_rate, deterministic=False)
  ours = np.asarray(jax.jit(layer.apply)(params, x, rngs={'dropout': jax.random.key(7)}))
  # Drawn once per call, outside the time loop, and applied at every step: the Keras LSTM below
  # is given these masks for the whole sequence, so a per-step mask would not match it.
  assert len(records) == 1
  mx, mh = records[0]
  lead = (4,) if rec_rate > 0 else ()
  if rate > 0:
    assert mx.shape == lead + (b, f)
    assert set(np.unique(mx)) == {0.0, np.float32(1 / (1 - rate))}
  if rec_rate > 0:
    assert mh.shape == (4, b, h)
    assert not all(np.array_equal(mh[0], m) for m in mh[1:])  # one mask per gate

  klstm = keras.layers.LSTM(h, return_sequences=True, dropout=rate, recurrent_dropout=rec_rate)
  klstm.build((b, t, f))
  klstm.set_weights(_lstm_params_to_keras(params['params']['cell']))
  as_keras = lambda m: None if m is None else (list(m) if m.ndim == 3 else m)
  klstm.cell._dropout_mask = as_keras(mx)  # Keras reuses preset masks for the whole sequence
  klstm.cell._recurrent_dropout_mask = as_keras(mh)
  ref = np.asarray(klstm(x, training=True))
  err = _max_err(ours, ref)
  print(f'LSTM dropout={rate} recurrent_dropout={rec_rate}: max abs err vs Keras {err:.2e}')
  assert err < 1e-5
  nodrop = np.asarray(jax.jit(keras_lstm(h).apply)(params, x))
  assert _max_err(ours, nodrop) > 1e-3


class _Bi(nn.Module):
  h: int
  rate: float
  rec_rate: float

  @nn.compact
  def __call__(self, x, *, train):
    return keras_bidirectional_lstm(self.h, dropout=self.rate, recurrent_dropout=self.rec_rate,
                                    deterministic=not train, name='bi')(x)


def test_recurrent_dropout_effects():
  b, t, f, h = 2, 6, 5, 4
  a = np.random.default_rng(4).normal(size=(b, t // 2, f)).astype(np.float32)
  x = np.concatenate([a, a[:, ::-1]], 1)  # palindrome in time
  params = jax.jit(lambda x: _Bi(h, 0.0, 0.3).init(jax.random.key(0), x, train=False))(x)['params']
  params = {'bi': {'forward_rnn': params['bi']['forward_rnn'],
                   'backward_rnn': params['bi']['forward_rnn']}}  # same weights both ways
  apply = jax.jit(lambda p, key, rec, train: _Bi(h, 0.0, rec).apply(
      {'params': p}, x, train=train, rngs={'dropout': key}), static_argnums=(2, 3))
  run = lambda rec, train, key=0: np.asarray(apply(params, jax.random.key(key), rec, train))
  mirror = lambda y: np.abs(y[:, :, :h] - y[:, ::-1, h:]).max()
  ref = run(0.0, False)
  assert mirror(ref) < 1e-6  # the backward direction is the forward one on reversed time
  np.testing.assert_array_equal(run(0.3, False), ref)  # inference: dropout has no effect
  np.testing.assert_allclose(run(0.0, True), ref, atol=1e-6)  # rate 0: train == inference
  y1, y2 = run(0.3, True, 1), run(0.3, True, 2)
  assert _max_err(y1, ref) > 1e-3 and _max_err(y1, y2) > 1e-3  # real, and rng-dependent
  assert mirror(y1) > 1e-3  # the two directions drew different masks


def test_focal_loss_matches_keras():
  rng = np.random.default_rng(5)
  for c in (2, 5):
    logits = (3.0 * rng.normal(size=(64, c))).astype(np.float32)
    labels = rng.integers(0, c, 64)
    ref = float(keras.losses.CategoricalFocalCrossentropy(alpha=0.25, gamma=3.0, from_logits=True)(
        np.eye(c, dtype=np.float32)[labels], logits))
    ours = float(softmax_focal_loss(logits, labels, alpha=0.25 * jnp.ones(c), gamma=3.0))
    print(f'focal loss C={c}: ours {ours:.6f} keras {ref:.6f}')
    assert abs(ours - ref) < 1e-5
  # The one difference: Keras clips p to [1e-7, 1 - 1e-7], so a hopeless item costs at most
  # alpha * -log(1e-7) = 0.25 * 16.12, while ours keeps the exact -log p (here 60).
  logits, labels = np.array([[30.0, -30.0]], np.float32), np.array([1])
  ref = float(keras.losses.CategoricalFocalCrossentropy(alpha=0.25, gamma=3.0, from_logits=True)(
      np.eye(2, dtype=np.float32)[labels], logits))
  ours = float(softmax_focal_loss(logits, labels, alpha=0.25 * jnp.ones(2), gamma=3.0))
  np.testing.assert_allclose([ref, ours], [0.25 * -np.log(1e-7), 0.25 * 60.0], rtol=1e-4)


def test_config_and_errors(fast_keras_init):
  import ml_collections

  cfg = ml_collections.ConfigDict(dict(compress=32, compress_dropout=0.1, lstm=[8, 8, 4],
                                       lstm_dropout=[0.1, 0.1, 0.1], recurrent_dropout=[0, 0, 0.1],
                                       dense=[16], dense_dropout=[0.2], bn_momentum=0.9))
  m = from_config(cfg, num_classes=3, dtype=jnp.float32, param_dtype=jnp.float32)
  assert m.lstm == (8, 8, 4) and m.dense == (16,) and m.num_classes == 3 and m.bn_momentum == 0.9
  x = np.zeros((2, 5, 7), np.float32)
  init = lambda m: jax.eval_shape(lambda: m.init(jax.random.key(0), x, train=False))  # no compile
  v = init(m)
  out, _ = jax.eval_shape(lambda v: m.apply(v, x, train=True, rngs={'dropout': jax.random.key(1)},
                                            mutable=['batch_stats']), v)
  assert out['logits'].shape == (2, 3) and out['attention'].shape == (2, 5)

  with pytest.raises(ValueError, match='residual'):
    init(ViolenceDetector(lstm=(96, 64, 64)))
  init(ViolenceDetector(lstm=(8, 4), lstm_dropout=(0, 0), recurrent_dropout=(0, 0), residual=False,
                        compress=8, dense=(), dense_dropout=()))

  other = keras.Sequential([keras.Input((5, 7)), keras.layers.Dense(8, activation='relu'),
                            keras.layers.BatchNormalization(), keras.layers.Flatten(),
                            keras.layers.Dense(2, activation='softmax')])
  with pytest.raises(ValueError, match='do not match'):
    violence_from_keras(other)
  conv = keras.Sequential([keras.Input((5, 7)), keras.layers.Conv1D(4, 3)])
  with pytest.raises(ValueError, match='unexpected weighted layer'):
    violence_from_keras(conv)
