"""Imbalance-robust multi-head frame classifier (seed 002): EfficientNet -> CBAM -> GAP+GMP ->
fusion -> five heads. Data flow for B frames of H x W (C = trunk channels, 1280 at width 1.0;
h = ceil(H / 32)):

  image       uint8 [B, H, W, 3] -> efficientnet.preprocess (ImageNet normalisation)
  trunk       EfficientNet(pool=False)                                     [B, h, w, C]
  cbam        channel then spatial attention (vad_jax.models.cbam)         [B, h, w, C]
  pool        concat[mean_hw, max_hw]                                      [B, 2C]
  fusion      Dense(fusion_dim) -> BatchNorm -> ReLU (= 'features')        [B, F]
              -> Dropout(dropout)
  heads       binary      Dense(2)            normal vs anomaly            [B, 2]
              type        Dense(C_all - 1)    which anomaly (class k+1)    [B, C_all - 1]
              full        Dense(C_all)        all classes (= 'logits')     [B, C_all]
              projection  Dense(proj_hidden) -> ReLU -> Dense(proj_dim)    [B, P]
                          (for a supervised contrastive loss; not normalised here)
              confidence  Dense(1): logit of "the full head's argmax is right"   [B]
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vad_jax.models.cbam import CBAM
from vad_jax.models.efficientnet import EfficientNet, preprocess

Dtype = Any

__all__ = ['MultiHeadClassifier', 'from_config', 'head_param_count']


def head_param_count(fusion_dim: int, num_classes: int, proj_hidden: int, proj_dim: int) -> int:
  """Parameters of the five heads on a fusion_dim feature (Dense: in * out + out)."""
  dense = lambda i, o: i * o + o
  f = fusion_dim
  return (dense(f, 2) + dense(f, num_classes - 1) + dense(f, num_classes) +
          dense(f, proj_hidden) + dense(proj_hidden, proj_dim) + dense(f, 1))


class MultiHeadClassifier(nn.Module):
  """See the module docstring. ``__call__(image uint8 [B,H,W,3], train)`` -> dict of f32:
  'logits' [B, C_all], 'binary_logits' [B, 2], 'type_logits' [B, C_all-1], 'projection'
  [B, proj_dim], 'confidence_logit' [B], 'features' [B, fusion_dim], 'channel_attention'
  [B, C], 'spatial_attention' [B, h, w].

  Submodules: ``trunk`` (EfficientNet fields: width_mult .. frozen_stages, bn_momentum), ``cbam``,
  ``fusion``, ``fusion_bn``, ``binary``, ``type``, ``full``, ``proj_hidden``, ``proj_out``,
  ``confidence``. ``bn_momentum`` is the trunk's; ``head_bn_momentum`` that of CBAM and the
  fusion BatchNorm. ``train=True`` uses batch statistics and updates 'batch_stats' (mutable)
  and needs the 'dropout' rng when ``dropout`` or ``drop_connect_rate`` > 0.
  """
  num_classes: int = 14
  width_mult: float = 1.0
  depth_mult: float = 1.0
  padding: str = 'symmetric'
  depthwise_impl: str = 'auto'
  conv_impl: str = 'auto'
  drop_connect_rate: float = 0.2
  bn_momentum: float = 0.99
  frozen_stages: int = 0
  cbam_reduction: int = 16
  cbam_min_hidden: int = 8
  spatial_hidden: int = 16
  spatial_kernel: int = 7
  head_bn_momentum: float = 0.9
  fusion_dim: int = 512
  dropout: float = 0.3
  proj_hidden: int = 256
  proj_dim: int = 128
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, image: jnp.ndarray, *, train: bool) -> dict[str, jnp.ndarray]:
    if self.num_classes < 2:
      raise ValueError(f'MultiHeadClassifier: num_classes must be >= 2 (Normal + anomalies), '
                       f'got {self.num_classes}')
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = preprocess(image, self.dtype)
    x = EfficientNet(width_mult=self.width_mult, depth_mult=self.depth_mult,
                     padding=self.padding, depthwise_impl=self.depthwise_impl,
                     conv_impl=self.conv_impl,
                     drop_connect_rate=self.drop_connect_rate, bn_momentum=self.bn_momentum,
                     frozen_stages=self.frozen_stages, pool=False, **kw, name='trunk')(
                         x, train=train)                                 # [B, h, w, C]
    x, att = CBAM(self.cbam_reduction, self.cbam_min_hidden, self.spatial_hidden,
                  self.spatial_kernel, self.head_bn_momentum, **kw, name='cbam')(x, train=train)
    x = jnp.concatenate([jnp.mean(x, axis=(1, 2)), jnp.max(x, axis=(1, 2))], -1)   # [B, 2C]
    x = nn.Dense(self.fusion_dim, **kw, name='fusion')(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=self.head_bn_momentum,
                     epsilon=1e-5, **kw, name='fusion_bn')(x)
    features = nn.relu(x)                                                # [B, F]
    h = nn.Dropout(self.dropout, deterministic=not train)(features)
    dense = lambda n, name: nn.Dense(n, **kw, name=name)
    proj = dense(self.proj_dim, 'proj_out')(nn.relu(dense(self.proj_hidden, 'proj_hidden')(h)))
    out = {
        'logits': dense(self.num_classes, 'full')(h),
        'binary_logits': dense(2, 'binary')(h),
        'type_logits': dense(self.num_classes - 1, 'type')(h),
        'projection': proj,
        'confidence_logit': dense(1, 'confidence')(h)[:, 0],
        'features': features,
        'channel_attention': att['channel'],
        'spatial_attention': att['spatial'],
    }
    return {k: v.astype(jnp.float32) for k, v in out.items()}


# config key -> field; `model.trunk.<key>` for the trunk, `model.<key>` for the rest.
_TRUNK_KEYS = ('width_mult', 'depth_mult', 'padding', 'depthwise_impl', 'conv_impl',
               'drop_connect_rate',
               'bn_momentum', 'frozen_stages')
_MODEL_KEYS = {'cbam_reduction': 'cbam_reduction', 'cbam_min_hidden': 'cbam_min_hidden',
               'spatial_hidden': 'spatial_hidden', 'spatial_kernel': 'spatial_kernel',
               'bn_momentum': 'head_bn_momentum', 'fusion_dim': 'fusion_dim',
               'dropout': 'dropout', 'proj_hidden': 'proj_hidden', 'proj_dim': 'proj_dim'}


def from_config(model_cfg, num_classes: int, dtype: Dtype = jnp.float32,
                param_dtype: Dtype = jnp.float32) -> MultiHeadClassifier:
  """MultiHeadClassifier from `config.model`: `trunk.{width_mult, depth_mult, padding,
  depthwise_impl, conv_impl, drop_connect_rate, bn_momentum, frozen_stages}` and `{cbam_reduction,
  cbam_min_hidden, spatial_hidden, spatial_kernel, bn_momentum (CBAM + fusion BatchNorm),
  fusion_dim, dropout, proj_hidden, proj_dim}`; missing keys keep the field defaults."""
  kwargs = {}
  trunk = model_cfg['trunk'] if 'trunk' in model_cfg else {}
  for key in _TRUNK_KEYS:
    if key in trunk:
      kwargs[key] = trunk[key]
  for key, field in _MODEL_KEYS.items():
    if key in model_cfg:
      kwargs[field] = model_cfg[key]
  return MultiHeadClassifier(num_classes=num_classes, dtype=dtype, param_dtype=param_dtype,
                             **kwargs)
