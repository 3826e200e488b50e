"""Hybrid detector (seed 000): EfficientNet trunk per frame -> BiLSTM -> relative Transformer -> heads.

Data flow for a batch of B videos of N frames, clip length T, clips S frames apart,
K = (N - T) // S + 1 clips a video:

  video   [B, N, H, W, 3] uint8
  inputs  [B, N, H, W, C]  (C = 3 or 6, `model.input`: vad_jax.models.inputs)
  trunk   [B*N, H, W, C] -> [B, N, F]          (F = 1280 at width 1.0)
  clips   [B*K, T, F]   clip k = frames k*S .. k*S+T-1 (stride S = T in training: disjoint clips,
                        frames K*T .. N-1 are only regression targets; S < T when scoring)
  BiLSTM  [B*K, T, 2h] -> Transformer [B*K, T, 2h]
  last    [B*K, 2h]  the LAST frame's feature (as in the seed: the heads predict what comes
                     after the clip, so the summary sits at the clip's end; the BiLSTM's backward
                     direction and the attention already carry the whole clip into it)
  heads   regression [B, K, R], class logits [B, K, 14], VAE (recon, mu, logvar)

With `trunk='none'` the input is already a feature sequence [B, N, F] (snippet features such as
I3D's, one vector per 16 frames): a parameter-free layer norm replaces the trunk (published
features have magnitudes in the tens, which would saturate the LSTM gates) and the rest is the
same, "frames" being snippets.

Regression target: for clip k ending at frame e = k*T + T - 1 the target is
``layer_norm(stop_gradient(trunk(frame e + horizon)) @ P)`` with P a fixed random orthonormal
F x R matrix (a constant, not a parameter). Stop-gradient means the regression loss never pulls
the trunk towards making targets alike, the fixed P cannot be shrunk, and the parameter-free
layer norm gives every target unit variance over its R features. It is NOT collapse-proof: a
trunk that maps every frame to one vector (pushed there by other losses) gives one constant
target, which a constant prediction matches at zero cost; nothing in the loss forbids that.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vad_jax.classes import NORMAL
from vad_jax.models.efficientnet import EfficientNet
from vad_jax.models.heads import MLPHead, VAEHead
from vad_jax.models.inputs import trunk_inputs
from vad_jax.models.recurrent import BiLSTM
from vad_jax.models.transformer import RelativeTransformer

Dtype = Any


def clip_anomaly_score(logits: jnp.ndarray) -> jnp.ndarray:
  """THE anomaly score of a clip: 1 - p(Normal) under the 14-class head. logits [..., C] -> [...].

  Only the classification head enters the score: it is the head trained to rank anomalous clips
  above normal ones (MIL) and it is calibrated to [0, 1]. The regression and VAE errors are
  returned by the model for analysis but have no common scale with it.
  """
  return 1.0 - jax.nn.softmax(logits.astype(jnp.float32), axis=-1)[..., NORMAL]


def target_projection(in_dim: int, out_dim: int, seed: int = 0) -> np.ndarray:
  """Fixed orthonormal projection [in_dim, out_dim] for regression targets (a constant)."""
  g = np.random.default_rng(seed).standard_normal((in_dim, max(in_dim, out_dim)))
  q, _ = np.linalg.qr(g)
  return q[:, :out_dim].astype(np.float32)


class HybridDetector(nn.Module):
  """See the module docstring. `__call__(video [B,N,H,W,3], train)` -> dict of outputs."""
  clip_len: int
  num_classes: int = 14
  horizon: int = 4
  width_mult: float = 1.0
  depth_mult: float = 1.0
  padding: str = 'symmetric'
  depthwise_impl: str = 'auto'
  conv_impl: str = 'auto'
  drop_connect_rate: float = 0.2
  bn_momentum: float = 0.99
  frozen_stages: int = 0
  trunk: str = 'efficientnet'       # 'efficientnet' (video in) | 'none' (features [B, N, F] in)
  input: str = 'rgb'                # what the trunk sees: see vad_jax.models.inputs
  lstm_hidden: int = 256
  lstm_layers: int = 2
  lstm_dropout: float = 0.5
  num_heads: int = 8
  ff_dim: int = 1024
  transformer_layers: int = 2
  transformer_dropout: float = 0.3
  head_hidden: int = 256
  head_dropout: float = 0.5
  reg_dim: int = 256
  vae_latent: int = 64
  vae_dropout: float = 0.3
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, video: jnp.ndarray, *, train: bool,
               stride: int | None = None,
               background: jnp.ndarray | None = None) -> dict[str, jnp.ndarray]:
    """video: uint8 [B, N, H, W, 3], or float [B, N, F] features when trunk='none'.
    stride: frames between clip starts (default clip_len: K = N // T disjoint clips, as in
    training); a smaller stride gives overlapping clips, K = (N - T) // stride + 1."""
    if self.trunk not in ('efficientnet', 'none'):
      raise ValueError(f"trunk must be 'efficientnet' or 'none', got {self.trunk!r}")
    b, n = video.shape[:2]
    t = self.clip_len
    s = stride or t
    if n < t:
      raise ValueError(f'a video of {n} frames is shorter than one clip ({t} frames)')
    if not 0 < s <= t:
      raise ValueError(f'clip stride must be in [1, clip_len={t}], got {s}')
    k = (n - t) // s + 1
    starts = np.arange(k) * s
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)

    if self.trunk == 'none':
      if video.ndim != 3:
        raise ValueError(f'trunk=none reads features [B, N, F], got shape {video.shape}')
      feats = _standardize(video.astype(jnp.float32)).astype(self.dtype)  # [B, N, F]
    else:
      h, w = video.shape[2:4]
      trunk = EfficientNet(width_mult=self.width_mult, depth_mult=self.depth_mult,
                           padding=self.padding, depthwise_impl=self.depthwise_impl,
                           conv_impl=self.conv_impl,
                           drop_connect_rate=self.drop_connect_rate, bn_momentum=self.bn_momentum,
                           frozen_stages=self.frozen_stages, **kw, name='trunk')
      x = trunk_inputs(video, self.input, self.dtype, background)       # [B, N, H, W, C]
      feats = trunk(x.reshape(b * n, h, w, x.shape[-1]), train=train)
      feats = feats.reshape(b, n, -1)                                   # [B, N, F]

    clips = feats[:, starts[:, None] + np.arange(t)].reshape(b * k, t, -1)  # [B*K, T, F]
    seq = BiLSTM(self.lstm_hidden, self.lstm_layers, self.lstm_dropout, **kw,
                 name='bilstm')(clips, train=train)
    seq = RelativeTransformer(self.transformer_layers, self.num_heads, self.ff_dim,
                              self.transformer_dropout, **kw, name='transformer')(seq, train=train)
    last = seq[:, -1]                                                   # [B*K, D]

    reg = MLPHead(self.head_hidden, self.reg_dim, self.head_dropout, **kw, name='regression')(
        last, train=train)
    logits = MLPHead(self.head_hidden, self.num_classes, self.head_dropout, **kw,
                     name='classification')(last, train=train)
    vae_in = jax.lax.stop_gradient(last)
    recon, mu, logvar = VAEHead(self.vae_latent, dropout=self.vae_dropout, **kw, name='vae')(
        vae_in, train=train)

    ends = starts + t - 1 + self.horizon                                # future frame of each clip
    future = jax.lax.stop_gradient(feats[:, np.minimum(ends, n - 1)]).astype(jnp.float32)
    proj = jnp.asarray(target_projection(feats.shape[-1], self.reg_dim))
    target = _standardize(future @ proj)                               # [B, K, R]

    split = lambda a: a.reshape(b, k, *a.shape[1:]).astype(jnp.float32)
    logits = split(logits)
    return {
        'logits': logits,                                   # [B, K, C]
        'score': clip_anomaly_score(logits),                # [B, K]
        'reg': split(reg),                                  # [B, K, R]
        'reg_target': target,                               # [B, K, R]
        'vae_in': split(vae_in), 'vae_recon': split(recon),  # [B, K, D]
        'vae_mu': split(mu), 'vae_logvar': split(logvar),   # [B, K, L]
    }


def _standardize(x: jnp.ndarray, eps: float = 1e-5) -> jnp.ndarray:
  """Parameter-free layer norm over the last axis."""
  mean = x.mean(-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(x.var(-1, keepdims=True) + eps)


def from_config(cfg, dtype, param_dtype, frozen_stages: int | None = None) -> HybridDetector:
  """Build from `config.model` + `config.data` (see configs/hybrid.py); `frozen_stages`
  overrides `model.trunk.frozen_stages`."""
  m, tr = cfg.model, cfg.model.trunk
  return HybridDetector(
      clip_len=cfg.data.clip_len, num_classes=m.num_classes, horizon=m.horizon,
      width_mult=tr.width_mult, depth_mult=tr.depth_mult, padding=tr.padding,
      depthwise_impl=tr.depthwise_impl, conv_impl=tr.get('conv_impl', 'auto'),
      drop_connect_rate=tr.drop_connect_rate,
      bn_momentum=tr.bn_momentum, trunk=tr.get('kind', 'efficientnet'),
      input=m.input,
      frozen_stages=tr.frozen_stages if frozen_stages is None else frozen_stages, lstm_hidden=m.lstm_hidden, lstm_layers=m.lstm_layers,
      lstm_dropout=m.lstm_dropout, num_heads=m.num_heads, ff_dim=m.ff_dim,
      transformer_layers=m.transformer_layers, transformer_dropout=m.transformer_dropout,
      head_hidden=m.head_hidden, head_dropout=m.head_dropout, reg_dim=m.reg_dim,
      vae_latent=m.vae_latent, vae_dropout=m.vae_dropout, dtype=dtype, param_dtype=param_dtype)
