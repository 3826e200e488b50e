"""Deep SVDD + VAE detector (seed 001): EfficientNet per frame -> BiLSTM -> attention pooling ->
shared embedding -> classification, binary, Deep SVDD and feature-VAE heads; optionally a
convolutional VAE on the frames themselves.

Data flow for B videos of N frames, clip length T, clips S frames apart,
K = (N - T) // S + 1 clips a video (S = T by default: disjoint clips, as in training):

  video      [B, N, H, W, 3] uint8
  inputs     [B, N, H, W, C]  (C = 3 or 6, `input`: vad_jax.models.inputs)
  trunk      [B*N, H, W, C] -> [B, N, F]             (F = 1280 at width 1.0)
  clips      [B*K, T, F]   clip k = frames k*S .. k*S+T-1
  BiLSTM     [B*K, T, 2h]  (2 layers, bidirectional)
  pooling    [B*K, 2h] and weights [B*K, T]          (vad_jax.models.pooling.AttentionPooling)
  embedding  Dense(E) -> LayerNorm -> ReLU -> Dropout  [B*K, E]
  heads      logits      MLPHead                      [B, K, num_classes]
             binary_logit Dense(1)                    [B, K]
             svdd_z      Dense(S_dim, no bias)        [B, K, S_dim]
             feature VAE VAEHead on stop_gradient(embedding): vae_in / vae_recon [B, K, E],
                         vae_mu / vae_logvar [B, K, L]
  conv VAE   (conv_vae=True) ConvVAE on every frame scaled to [-1, 1] (video / 127.5 - 1, the
             picture, whatever `input` the trunk sees; resized to conv_size^2 when conv_size >
             0, antialiased bilinear): conv_mse / conv_kl [B, N] per frame,
             conv_err [B, K] = mean conv_mse over the clip's frames.

Deep SVDD: the projection has no bias (a bias alone could map everything onto the centre); the
centre is not a parameter and lives outside the model (the system estimates it from normal
training clips). The projection's missing bias does NOT make collapse impossible: the embedding's
LayerNorm has a bias, so a constant embedding is reachable; the system's losses must prevent it.
The feature VAE reads stop_gradient(embedding): its loss trains the VAE only and never shapes the
embedding. The conv VAE is independent of the trunk.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vad_jax.models.conv_vae import ConvVAE, frame_errors
from vad_jax.models.efficientnet import EfficientNet
from vad_jax.models.heads import MLPHead, VAEHead
from vad_jax.models.inputs import trunk_inputs
from vad_jax.models.pooling import AttentionPooling
from vad_jax.models.recurrent import BiLSTM

Dtype = Any

__all__ = ['SVDDVAEDetector', 'clip_starts', 'from_config']


def clip_starts(num_frames: int, clip_len: int, stride: int | None = None) -> np.ndarray:
  """First frame of each clip [K], K = (N - T) // S + 1, S = stride or T (HybridDetector's rule:
  ValueError when N < T or S is outside [1, T])."""
  t = clip_len
  s = stride or t
  if num_frames < t:
    raise ValueError(f'a video of {num_frames} frames is shorter than one clip ({t} frames)')
  if not 0 < s <= t:
    raise ValueError(f'clip stride must be in [1, clip_len={t}], got {s}')
  return np.arange((num_frames - t) // s + 1) * s


class SVDDVAEDetector(nn.Module):
  """See the module docstring. `__call__(video uint8 [B,N,H,W,3], *, train, stride=None)` -> dict
  of float32 outputs. `train=True` needs mutable 'batch_stats' (trunk) and the 'dropout' and
  'vae' rngs."""
  clip_len: int
  num_classes: int = 14
  width_mult: float = 1.0
  depth_mult: float = 1.0
  padding: str = 'symmetric'
  depthwise_impl: str = 'auto'
  conv_impl: str = 'auto'
  drop_connect_rate: float = 0.2
  bn_momentum: float = 0.99
  frozen_stages: int = 0
  input: str = 'rgb'                 # what the trunk sees: see vad_jax.models.inputs
  lstm_hidden: int = 256
  lstm_layers: int = 2
  lstm_dropout: float = 0.3
  attention_hidden: int = 128
  embed_dim: int = 256
  embed_dropout: float = 0.3
  head_hidden: int = 256
  head_dropout: float = 0.3
  svdd_dim: int = 128
  vae_latent: int = 128
  vae_hidden: tuple[int, ...] = (256, 128)
  vae_dropout: float = 0.3
  conv_vae: bool = False             # the seed's optional image-level VAE
  conv_channels: tuple[int, ...] = (32, 64, 128, 256)
  conv_latent: int = 128
  conv_size: int = 0                 # > 0: frames resized to conv_size^2 for the conv VAE (the
                                     # seed's VAE is on 64x64 frames); 0 = the frame size
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, video: jnp.ndarray, *, train: bool,
               stride: int | None = None,
               background: jnp.ndarray | None = None) -> dict[str, jnp.ndarray]:
    """video: uint8 [B, N, H, W, 3]. stride: frames between clip starts (default clip_len)."""
    if video.ndim != 5:
      raise ValueError(f'SVDDVAEDetector reads video [B, N, H, W, 3], got shape {video.shape}')
    b, n, h, w = video.shape[:4]
    t = self.clip_len
    starts = clip_starts(n, t, stride)
    k = len(starts)
    frames = starts[:, None] + np.arange(t)                             # [K, T]
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)

    trunk = EfficientNet(width_mult=self.width_mult, depth_mult=self.depth_mult,
                         padding=self.padding, depthwise_impl=self.depthwise_impl,
                         conv_impl=self.conv_impl,
                         drop_connect_rate=self.drop_connect_rate, bn_momentum=self.bn_momentum,
                         frozen_stages=self.frozen_stages, **kw, name='trunk')
    x = trunk_inputs(video, self.input, self.dtype, background)         # [B, N, H, W, C]
    feats = trunk(x.reshape(b * n, h, w, x.shape[-1]), train=train).reshape(b, n, -1)

    clips = feats[:, frames].reshape(b * k, t, -1)                      # [B*K, T, F]
    seq = BiLSTM(self.lstm_hidden, self.lstm_layers, self.lstm_dropout, **kw,
                 name='bilstm')(clips, train=train)                     # [B*K, T, 2h]
    pooled, att = AttentionPooling(self.attention_hidden, **kw, name='attention')(seq)

    e = nn.Dense(self.embed_dim, **kw, name='embed')(pooled)
    e = nn.relu(nn.LayerNorm(**kw, name='embed_norm')(e))
    e = nn.Dropout(self.embed_dropout, deterministic=not train)(e)      # [B*K, E]

    logits = MLPHead(self.head_hidden, self.num_classes, self.head_dropout, **kw,
                     name='classification')(e, train=train)
    binary = nn.Dense(1, **kw, name='binary')(e)[:, 0]
    svdd_z = nn.Dense(self.svdd_dim, use_bias=False, **kw, name='svdd')(e)
    vae_in = jax.lax.stop_gradient(e)
    recon, mu, logvar = VAEHead(self.vae_latent, tuple(self.vae_hidden), self.vae_dropout, **kw,
                                name='vae')(vae_in, train=train)

    split = lambda a: a.reshape(b, k, *a.shape[1:]).astype(jnp.float32)
    out = {
        'logits': split(logits),                              # [B, K, C]
        'binary_logit': split(binary),                        # [B, K]
        'svdd_z': split(svdd_z),                              # [B, K, S]
        'vae_in': split(vae_in), 'vae_recon': split(recon),   # [B, K, E]
        'vae_mu': split(mu), 'vae_logvar': split(logvar),     # [B, K, L]
        'attention': split(att),                              # [B, K, T]
    }
    if self.conv_vae:
      pic = (video.astype(jnp.float32) / 127.5 - 1.0).reshape(b * n, h, w, video.shape[-1])
      if self.conv_size and (h, w) != (self.conv_size, self.conv_size):
        pic = jax.image.resize(pic, (b * n, self.conv_size, self.conv_size, pic.shape[-1]),
                               'linear', antialias=True)
      crec, cmu, clogvar = ConvVAE(tuple(self.conv_channels), self.conv_latent, **kw,
                                   name='conv_vae')(pic.astype(self.dtype), train=train)
      mse, kl = frame_errors(crec, pic, cmu, clogvar)
      mse, kl = mse.reshape(b, n), kl.reshape(b, n)
      out['conv_mse'], out['conv_kl'] = mse, kl               # [B, N]
      out['conv_err'] = mse[:, frames].mean(-1)               # [B, K]
    return out


def from_config(cfg, dtype, param_dtype, frozen_stages: int | None = None) -> SVDDVAEDetector:
  """Build from `config.data.clip_len` and `config.model`: num_classes, input, trunk.{width_mult,
  depth_mult, padding, depthwise_impl, drop_connect_rate, bn_momentum, frozen_stages},
  lstm_hidden, lstm_layers, lstm_dropout, attention_hidden, embed_dim, embed_dropout, head_hidden,
  head_dropout, svdd_dim, vae_latent, vae_hidden, vae_dropout, conv_vae, conv_channels,
  conv_latent (all required). `frozen_stages` overrides `model.trunk.frozen_stages`."""
  m, tr = cfg.model, cfg.model.trunk
  return SVDDVAEDetector(
      clip_len=cfg.data.clip_len, num_classes=m.num_classes,
      width_mult=tr.width_mult, depth_mult=tr.depth_mult, padding=tr.padding,
      depthwise_impl=tr.depthwise_impl, conv_impl=tr.get('conv_impl', 'auto'),
      drop_connect_rate=tr.drop_connect_rate,
      bn_momentum=tr.bn_momentum,
      frozen_stages=tr.frozen_stages if frozen_stages is None else frozen_stages,
      input=m.input, lstm_hidden=m.lstm_hidden, lstm_layers=m.lstm_layers,
      lstm_dropout=m.lstm_dropout, attention_hidden=m.attention_hidden, embed_dim=m.embed_dim,
      embed_dropout=m.embed_dropout, head_hidden=m.head_hidden, head_dropout=m.head_dropout,
      svdd_dim=m.svdd_dim, vae_latent=m.vae_latent, vae_hidden=tuple(m.vae_hidden),
      vae_dropout=m.vae_dropout, conv_vae=bool(m.conv_vae),
      conv_channels=tuple(m.conv_channels), conv_latent=m.conv_latent,
      conv_size=m.get('conv_size', 0),
      dtype=dtype, param_dtype=param_dtype)
