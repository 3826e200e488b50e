"""Seed 003 as a system: the violence classifier on clips of feature vectors.

A training example is one clip of `data.clip_len` feature vectors sampled from a video (the data
source does the sampling: jittered in training, segment centres in evaluation) and the video's
class. Loss: softmax focal loss, gamma 3.0, alpha 0.25 on every class (the seed's Keras
`CategoricalFocalCrossentropy`; a scalar alpha scales the loss, it does not re-weight classes);
L2 0.003 on kernels comes from the optimizer (`optim.l2`). Output: 'logits' [B, C] and the
attention weights over time [B, T].
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from vad_jax.losses.focal import softmax_focal_loss
from vad_jax.models import violence as violence_model
from vad_jax.models.precision import dtype_policy
from vad_jax.systems.base import System


@dataclasses.dataclass(frozen=True)
class ViolenceSystem(System):
  task: ClassVar[str] = 'classification'
  train_fields: ClassVar[tuple[str, ...]] = ('features', 'label')
  predict_fields: ClassVar[tuple[str, ...]] = ('features',)

  model: violence_model.ViolenceDetector
  gamma: float = 3.0
  alpha: float = 0.25

  @classmethod
  def check_config(cls, config) -> None:
    if config.loss.focal_gamma < 0:
      raise ValueError(f'loss.focal_gamma={config.loss.focal_gamma} must be >= 0')
    if config.get('eval_tta'):
      raise ValueError(f"eval_tta={config.eval_tta!r}: views transform videos; the violence "
                       "system reads feature vectors (set eval_tta='')")

  @classmethod
  def from_config(cls, config, info) -> 'ViolenceSystem':
    spec = info.element_spec.get('features')
    if spec is None or len(spec.shape) != 2:
      raise ValueError(f"the violence system reads 'features' [T, F] clips; the data source "
                       f'{config.data.source!r} gives {info.element_spec}')
    dtype, param_dtype = dtype_policy(config.model)
    model = violence_model.from_config(config.model, info.num_classes, dtype, param_dtype)
    return cls(model=model, gamma=config.loss.focal_gamma, alpha=config.loss.focal_alpha)

  def init(self, rng: jax.Array, spec: dict) -> dict[str, Any]:
    x = jnp.zeros(spec['features'].shape, jnp.float32)
    return self.model.init({'params': rng}, x, train=False)

  def loss(self, variables, batch: dict, rng: jax.Array):
    """batch: 'features' float32 [B, T, F], 'label' int32 [B]."""
    out, mutated = self.model.apply(variables, batch['features'], train=True,
                                    rngs={'dropout': rng}, mutable=['batch_stats'])
    logits, label = out['logits'], batch['label']
    alpha = jnp.full((logits.shape[-1],), self.alpha, jnp.float32)
    loss = softmax_focal_loss(logits, label, alpha, self.gamma)
    metrics = {'loss': loss, 'accuracy': jnp.mean(jnp.argmax(logits, -1) == label)}
    return loss, (metrics, {'batch_stats': mutated['batch_stats']})

  def predict(self, variables, batch: dict) -> dict:
    out = self.model.apply(variables, batch['features'], train=False)
    return {'logits': out['logits'], 'attention': out['attention']}

  def definitions(self) -> dict:
    return {'prediction_definition': 'softmax of the logits of one clip of feature vectors per '
                                     'video (segment centres); positive-class score = its '
                                     'probability'}
