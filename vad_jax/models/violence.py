"""Violence detector (seed 003, "hybrid optimal"): stacked BiLSTMs + temporal attention over
per-frame feature vectors, built to match the seed's Keras 3 model weight for weight.

Data flow for B clips of T frames with F-dim features (seed: T = 20, F = 4096):

  features  [B, T, F]
  compress  Dense(512) relu -> BatchNorm -> Dropout(0.25)                   [B, T, 512]
  lstm0     BiLSTM(96, dropout 0.35, recurrent 0.20) -> BatchNorm  (= x1)    [B, T, 192]
  lstm1     BiLSTM(96, dropout 0.35, recurrent 0.20) -> BatchNorm, + x1      [B, T, 192]
  lstm2     BiLSTM(64, dropout 0.30, recurrent 0.15) -> BatchNorm            [B, T, 128]
  attention a = softmax_t(tanh(Dense(1)(x)))                                 [B, T]
            pooled = sum_t a[:, t] * x[:, t]                                 [B, 128]
  dense0    Dense(128) relu -> BatchNorm -> Dropout(0.35)                    [B, 128]
  dense1    Dense(64) relu -> BatchNorm -> Dropout(0.25)                     [B, 64]
  logits    Dense(2)   (Keras applies softmax here; we return logits)        [B, 2]

BatchNorm is Keras' (momentum 0.99, epsilon 1e-3, statistics over every axis but the last,
two-pass variance); the LSTMs are :func:`vad_jax.models.recurrent.keras_bidirectional_lstm`
(Keras' per-sequence, per-gate input/recurrent dropout masks). Dense kernels start
glorot-uniform as in Keras. ``vad_jax.convert.keras.violence_from_keras`` loads a Keras model.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vad_jax.models.recurrent import keras_bidirectional_lstm

Dtype = Any

__all__ = ['ViolenceDetector', 'from_config']


class ViolenceDetector(nn.Module):
  """See the module docstring. ``__call__(features [B,T,F], train)`` ->
  ``{'logits': f32 [B, C], 'attention': f32 [B, T]}``.

  ``residual``: lstm1's output (after its BatchNorm) adds lstm0's (after BatchNorm); needs
  ``lstm[0] == lstm[1]``. ``train=True`` normalises with batch statistics and updates
  ``batch_stats`` (make it mutable) and needs the 'dropout' rng unless every rate is 0;
  ``train=False`` uses the running averages and no dropout.
  """
  compress: int = 512
  compress_dropout: float = 0.25
  lstm: tuple[int, ...] = (96, 96, 64)
  lstm_dropout: tuple[float, ...] = (0.35, 0.35, 0.30)
  recurrent_dropout: tuple[float, ...] = (0.20, 0.20, 0.15)
  residual: bool = True
  dense: tuple[int, ...] = (128, 64)
  dense_dropout: tuple[float, ...] = (0.35, 0.25)
  num_classes: int = 2
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def _check(self):
    if not self.lstm:
      raise ValueError('ViolenceDetector: lstm must name at least one layer width')
    if not len(self.lstm) == len(self.lstm_dropout) == len(self.recurrent_dropout):
      raise ValueError(f'ViolenceDetector: lstm {self.lstm}, lstm_dropout {self.lstm_dropout} and '
                       f'recurrent_dropout {self.recurrent_dropout} must have the same length')
    if len(self.dense) != len(self.dense_dropout):
      raise ValueError(f'ViolenceDetector: dense {self.dense} and dense_dropout '
                       f'{self.dense_dropout} must have the same length')
    if self.residual and (len(self.lstm) < 2 or self.lstm[0] != self.lstm[1]):
      raise ValueError(f'ViolenceDetector: residual=True adds lstm layer 1 to layer 0, which needs '
                       f'two layers of equal width, got lstm={self.lstm}')

  @nn.compact
  def __call__(self, features: jnp.ndarray, *, train: bool) -> dict[str, jnp.ndarray]:
    self._check()
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    dense = lambda n, name: nn.Dense(n, kernel_init=nn.initializers.glorot_uniform(), **kw,
                                     name=name)
    bn = lambda name: nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                                   epsilon=self.bn_epsilon, use_fast_variance=False, **kw,
                                   name=name)
    drop = lambda r, y: nn.Dropout(r, deterministic=not train)(y)

    x = features.astype(self.dtype)                                     # [B, T, F]
    x = drop(self.compress_dropout, bn('compress_bn')(nn.relu(dense(self.compress, 'compress')(x))))
    skip = None
    for i, (h, r, rr) in enumerate(zip(self.lstm, self.lstm_dropout, self.recurrent_dropout)):
      x = keras_bidirectional_lstm(h, dropout=r, recurrent_dropout=rr, deterministic=not train,
                                   **kw, name=f'lstm{i}')(x)            # [B, T, 2h]
      x = bn(f'lstm{i}_bn')(x)
      if self.residual and i == 0:
        skip = x
      elif self.residual and i == 1:
        x = x + skip

    score = jnp.tanh(dense(1, 'attention')(x))[..., 0]                  # [B, T]
    att = jax.nn.softmax(score.astype(jnp.float32), axis=-1)
    x = jnp.einsum('bt,btc->bc', att.astype(x.dtype), x)               # [B, 2h_last]

    for i, (n, r) in enumerate(zip(self.dense, self.dense_dropout)):
      x = drop(r, bn(f'dense{i}_bn')(nn.relu(dense(n, f'dense{i}')(x))))
    logits = dense(self.num_classes, 'logits')(x)
    return {'logits': logits.astype(jnp.float32), 'attention': att}


def from_config(model_cfg, num_classes: int, dtype: Dtype = jnp.float32,
                param_dtype: Dtype = jnp.float32) -> ViolenceDetector:
  """ViolenceDetector from a ConfigDict with keys named like its fields (compress,
  compress_dropout, lstm, lstm_dropout, recurrent_dropout, dense, dense_dropout, bn_momentum;
  optional residual, bn_epsilon); missing keys keep the field defaults."""
  fields = ('compress', 'compress_dropout', 'lstm', 'lstm_dropout', 'recurrent_dropout',
            'residual', 'dense', 'dense_dropout', 'bn_momentum', 'bn_epsilon')
  kwargs = {}
  for key in fields:
    if key in model_cfg:
      v = model_cfg[key]
      kwargs[key] = tuple(v) if isinstance(v, (list, tuple)) else v
  return ViolenceDetector(num_classes=num_classes, dtype=dtype, param_dtype=param_dtype, **kwargs)
