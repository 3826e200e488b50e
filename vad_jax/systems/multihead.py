"""Seed 002 as a system: the imbalance-robust multi-head frame classifier (vad_jax.models.multihead).

A training example is one frame ('image' uint8 [H, W, 3]) and its class (14: Normal + 13 anomaly
types). Loss, every class prior pi from the training label counts:
  focal   (weight `w_focal`, seed 50%): class-balanced focal loss (effective number of samples,
          beta 0.9999, gamma 2.5) on the 14-class head;
  ce      (`w_ce`, 30%): balanced cross-entropy (sklearn 'balanced' class weights), the mean of
          the binary head's (normal vs anomaly) and the type head's (13 anomaly types, on
          anomalous examples only);
  con     (`w_con`, 20%): supervised contrastive loss (temperature `temperature`) on the
          projection head;
  conf    (`w_conf`): binary cross-entropy of the confidence head against "the 14-class head's
          argmax is right" (a stop-gradient target).
Logit adjustment (Menon et al. 2021): every head's TRAINING logits get + tau * log pi of its own
label set (tau 2.0), so rare classes must win by a margin; predictions use the raw logits.
With mixup / CutMix (lam, 'label_b') each supervised term is lam * L(label) + (1 - lam) *
L(label_b); the contrastive and confidence terms use the label holding the larger share.
Output: 'logits' [B, 14] (the 14-class head; the `classification` evaluator reads it),
'binary_logits' [B, 2], 'type_logits' [B, 13], 'confidence' [B] in [0, 1].
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vad_jax.classes import CLASS_NAMES, NORMAL
from vad_jax.data import mixing
from vad_jax.losses import imbalance
from vad_jax.models import multihead as multihead_model
from vad_jax.models.precision import dtype_policy
from vad_jax.systems.base import System


def head_counts(class_counts) -> dict[str, np.ndarray]:
  """Label counts of each head's label set from the 14 class counts: 'full' [C], 'binary'
  [2] (normal, anomalous), 'type' [C - 1] (the anomaly classes)."""
  n = np.asarray(class_counts, np.float64)
  return {'full': n, 'binary': np.array([n[NORMAL], n.sum() - n[NORMAL]]),
          'type': np.delete(n, NORMAL)}


@dataclasses.dataclass(frozen=True)
class MultiHeadSystem(System):
  task: ClassVar[str] = 'classification'
  train_fields: ClassVar[tuple[str, ...]] = ('image', 'label')
  predict_fields: ClassVar[tuple[str, ...]] = ('image',)
  mix_field: ClassVar[str | None] = 'image'

  model: multihead_model.MultiHeadClassifier
  counts: tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]   # full, binary, type
  tau: float = 2.0
  beta: float = 0.9999
  gamma: float = 2.5
  temperature: float = 0.1
  w_focal: float = 0.5
  w_ce: float = 0.3
  w_con: float = 0.2
  w_conf: float = 0.1

  @classmethod
  def check_config(cls, config) -> None:
    l = config.loss
    if not 0 <= l.cb_beta < 1:
      raise ValueError(f'loss.cb_beta={l.cb_beta} must be in [0, 1)')
    if l.focal_gamma < 0 or l.tau < 0 or l.temperature <= 0:
      raise ValueError(f'loss.focal_gamma={l.focal_gamma} and loss.tau={l.tau} must be >= 0, '
                       f'loss.temperature={l.temperature} > 0')
    for key in ('w_focal', 'w_ce', 'w_con', 'w_conf'):
      if l[key] < 0:
        raise ValueError(f'loss.{key}={l[key]} must be >= 0')

  @classmethod
  def from_config(cls, config, info) -> 'MultiHeadSystem':
    names = tuple(info.class_names)
    if names[NORMAL] != CLASS_NAMES[NORMAL] or len(names) < 3:
      raise ValueError(f'the multi-head classifier needs Normal first and >= 2 anomaly classes; '
                       f'the data gives {list(names)}')
    spec = info.element_spec.get('image')
    if spec is None or len(spec.shape) != 3:
      raise ValueError(f"the multi-head classifier reads 'image' [H, W, 3] frames; the data "
                       f'source {config.data.source!r} gives {info.element_spec}')
    dtype, param_dtype = dtype_policy(config.model)
    l = config.loss
    c = head_counts(info.class_counts)
    return cls(model=multihead_model.from_config(config.model, len(names), dtype, param_dtype),
               counts=tuple(tuple(float(x) for x in c[k]) for k in ('full', 'binary', 'type')),
               tau=l.tau, beta=l.cb_beta, gamma=l.focal_gamma, temperature=l.temperature,
               w_focal=l.w_focal, w_ce=l.w_ce, w_con=l.w_con, w_conf=l.w_conf)

  def init(self, rng: jax.Array, spec: dict) -> dict[str, Any]:
    image = jnp.zeros(spec['image'].shape, spec['image'].dtype)
    return self.model.init({'params': rng}, image, train=False)

  def loss(self, variables, batch: dict, rng: jax.Array):
    """batch: 'image' [B, H, W, 3] (uint8, float32 when mixed), 'label' int32 [B] (+ 'label_b',
    'mix_lam' [B]). -> (loss, (metrics, {'batch_stats': ...}))."""
    out, mutated = self.model.apply(variables, batch['image'], train=True,
                                    rngs={'dropout': rng}, mutable=['batch_stats'])
    full_n, bin_n, type_n = (jnp.asarray(c, jnp.float32) for c in self.counts)
    adjust = lambda logits, n: imbalance.logit_adjust(logits, imbalance.log_prior(n), self.tau)
    full = adjust(out['logits'], full_n)
    binary = adjust(out['binary_logits'], bin_n)
    types = adjust(out['type_logits'], type_n)
    label = batch['label']
    label_b = batch.get('label_b', label)
    lam = jnp.mean(batch['mix_lam']) if 'mix_lam' in batch else jnp.float32(1.0)

    def supervised(y):
      focal = imbalance.class_balanced_focal_loss(full, y, full_n, self.beta, self.gamma)
      anomalous = y != NORMAL
      ce_bin = imbalance.balanced_cross_entropy(binary, anomalous.astype(jnp.int32), bin_n)
      ce_type = imbalance.balanced_cross_entropy(types, jnp.maximum(y - 1, 0), type_n,
                                                 anomalous.astype(jnp.float32))
      return focal, 0.5 * (ce_bin + ce_type)

    focal_a, ce_a = supervised(label)
    focal_b, ce_b = supervised(label_b) if 'label_b' in batch else (focal_a, ce_a)
    l_focal = mixing.mixed(focal_a, focal_b, lam)
    l_ce = mixing.mixed(ce_a, ce_b, lam)
    major = jnp.where(lam >= 0.5, label, label_b)
    l_con = imbalance.supervised_contrastive_loss(out['projection'], major, self.temperature)
    right = jax.lax.stop_gradient((jnp.argmax(out['logits'], -1) == major).astype(jnp.float32))
    l_conf = jnp.mean(optax.losses.sigmoid_binary_cross_entropy(out['confidence_logit'], right))
    total = (self.w_focal * l_focal + self.w_ce * l_ce + self.w_con * l_con +
             self.w_conf * l_conf)
    metrics = {'loss': total, 'focal': l_focal, 'ce': l_ce, 'contrastive': l_con,
               'confidence': l_conf, 'accuracy': jnp.mean(right)}
    return total, (metrics, {'batch_stats': mutated['batch_stats']})

  def predict(self, variables, batch: dict) -> dict[str, jnp.ndarray]:
    out = self.model.apply(variables, batch['image'], train=False)
    return {'logits': out['logits'], 'binary_logits': out['binary_logits'],
            'type_logits': out['type_logits'],
            'confidence': jax.nn.sigmoid(out['confidence_logit'])}

  def definitions(self) -> dict:
    return {'prediction_definition':
                'softmax of the 14-class head on one frame (raw logits: the logit adjustment '
                f'tau={self.tau:g} * log prior is applied in training only); anomaly_auc scores '
                'a frame 1 - p(Normal)'}
