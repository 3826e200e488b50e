"""Seed 000 as a system: HybridDetector + multi-task loss (regression, focal, MIL, VAE).

Weak supervision: a training batch holds B videos with their video-level class only (no frame
labels). Every video is a MIL bag of K clips.
  * MIL ranking (Sultani) on the clip anomaly scores: max over an anomalous bag must beat max over
    a normal bag by the margin.
  * Focal classification: every clip of a normal video is labelled Normal; of an anomalous video
    only the top-scoring clip (the MIL witness) is labelled with the video's class; the other
    clips of an anomalous video are unlabelled (weight 0), since they may well be normal.
  * Regression: each clip predicts the (projected, normalised) trunk features of the frame
    `horizon` frames after its last frame (see vad_jax.models.hybrid).
  * VAE: reconstructs the (stop-gradient) sequence feature of every clip.
"""

import dataclasses
import os
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from vad_jax.classes import CLASS_NAMES, NORMAL
from vad_jax.losses.focal import softmax_focal_loss
from vad_jax.losses.mil import mil_ranking_loss
from vad_jax.losses.regression import smooth_l1
from vad_jax.losses.vae import vae_loss
from vad_jax.models import efficientnet, hybrid as hybrid_model
from vad_jax.models.precision import dtype_policy
from vad_jax.systems import clips
from vad_jax.systems.base import System


@dataclasses.dataclass(frozen=True)
class HybridSystem(System):
  task: ClassVar[str] = 'anomaly'
  train_fields: ClassVar[tuple[str, ...]] = ('video', 'label')
  predict_fields: ClassVar[tuple[str, ...]] = ('video',)

  model: hybrid_model.HybridDetector
  alpha: tuple[float, ...]          # focal per-class weights from the labels it sees (clips.focal_alpha)
  eval_stride: int | None = None    # frames between clip starts when scoring (None: clip_len)
  w_reg: float = 1.0
  w_focal: float = 0.5
  w_mil: float = 0.3
  w_vae: float = 0.3
  beta: float = 1.0                 # smooth L1
  gamma: float = 2.0                # focal
  margin: float = 0.5
  lambda_smooth: float = 8e-5
  lambda_sparse: float = 8e-5
  vae_beta: float = 0.01
  weights: str = ''                 # Keras EfficientNet file the trunk starts from ('' = none)
  eval_tta: str = ''

  @classmethod
  def check_config(cls, config) -> None:
    clips.check_clip_config(config)
    d, m = config.data, config.model
    if m.trunk.get('weights') and m.get('input', 'rgb') != 'rgb':
      raise ValueError(f'model.trunk.weights (ImageNet RGB weights) need model.input=rgb, '
                       f'not {m.input!r}')
    if m.trunk.get('weights') and m.trunk.padding != 'same':
      raise ValueError("Keras EfficientNet weights need model.trunk.padding='same' "
                       f'(got {m.trunk.padding!r})')
    if d.get('min_event_px', 0.0) < 0:
      raise ValueError(f'data.min_event_px={d.min_event_px} must be >= 0 (0: no size floor)')

  @classmethod
  def data_request(cls, config) -> dict:
    return {'train_frames': cls.train_frames(config)}

  @classmethod
  def examples_per_step(cls, config) -> int:
    return clips.videos_per_step(config)

  @classmethod
  def from_config(cls, config, info) -> 'HybridSystem':
    names = tuple(info.class_names)
    if names[NORMAL] != CLASS_NAMES[NORMAL] or len(names) != config.model.num_classes:
      raise ValueError(f'the hybrid needs {config.model.num_classes} classes (model.num_classes), '
                       f'{CLASS_NAMES[NORMAL]!r} first; the data gives {list(names)}')
    field = cls.train_fields[0]
    if field not in info.element_spec:
      raise ValueError(f'{cls.__name__} reads {field!r}; the data source {config.data.source!r} '
                       f'gives {sorted(info.element_spec)}')
    dtype, param_dtype = dtype_policy(config.model)
    l = config.loss
    tr = config.model.trunk
    frozen = tr.frozen_stages
    if frozen and not tr.weights:
      logging.warning('model.trunk.frozen_stages=%d ignored: no model.trunk.weights file, and '
                      'freezing randomly initialised stages would only cripple the trunk', frozen)
      frozen = 0
    return cls(model=hybrid_model.from_config(config, dtype, param_dtype, frozen_stages=frozen),
               alpha=clips.focal_alpha(info.class_counts, config.data.clips_per_video),
               eval_stride=config.data.eval_stride,
               w_reg=l.w_reg, w_focal=l.w_focal,
               w_mil=l.w_mil, w_vae=l.w_vae, beta=l.smooth_l1_beta, gamma=l.focal_gamma,
               margin=l.mil_margin, lambda_smooth=l.mil_lambda_smooth,
               lambda_sparse=l.mil_lambda_sparse, vae_beta=l.vae_beta, weights=tr.weights,
               eval_tta=config.get('eval_tta', ''))

  @staticmethod
  def train_frames(config) -> int:
    """K clips of T frames plus `horizon` frames so the last clip has a regression target."""
    return config.data.clips_per_video * config.data.clip_len + config.model.horizon

  def init(self, rng: jax.Array, spec: dict) -> dict[str, Any]:
    field = self.train_fields[0]
    video = jnp.zeros(spec[field].shape, spec[field].dtype)
    return self.model.init({'params': rng}, video, train=False)

  def frozen_params(self) -> tuple[str, ...]:
    """The trunk's frozen stages (only when it starts from a weights file)."""
    names = sorted(efficientnet.frozen_names(self.model.frozen_stages))
    return (f'^trunk/({"|".join(names)})/',) if names else ()

  def prepare(self, variables, batches):
    """Starts the trunk from `model.trunk.weights` (a Keras EfficientNet file) when given."""
    del batches
    if not self.weights:
      return variables
    params, stats = load_trunk(self.weights, self.model, variables['params'],
                               variables['batch_stats'])
    logging.info('trunk initialised from %s', self.weights)
    return dict(variables, params=params, batch_stats=stats)

  def definitions(self) -> dict:
    return {'score_definition': '1 - p(Normal) of the 14-class head per clip'}

  def loss(self, variables, batch: dict[str, jnp.ndarray], rng: jax.Array):
    """batch: 'video' uint8 [B, N, H, W, 3], 'label' int32 [B].
    -> (loss, (metrics, {'batch_stats': new statistics}))."""
    drop_rng, vae_rng = jax.random.split(rng)
    x = batch[self.train_fields[0]]
    out, mutated = self.model.apply(
        variables, x, train=True,
        rngs={'dropout': drop_rng, 'vae': vae_rng}, mutable=['batch_stats'])
    label = batch['label']
    b, k = out['score'].shape
    anomalous = label != NORMAL

    # Regression on clips whose future frame lies inside the video (a static prefix of the K).
    n, t, h = x.shape[1], self.model.clip_len, self.model.horizon
    kv = int(np.sum(np.arange(k) * t + t - 1 + h < n))
    l_reg = smooth_l1(out['reg'][:, :kv], out['reg_target'][:, :kv], self.beta) if kv else 0.0

    # Focal: all clips of normal videos (class 0); the MIL witness of anomalous videos.
    witness = jax.nn.one_hot(jnp.argmax(jax.lax.stop_gradient(out['score']), axis=1), k)
    weight = jnp.where(anomalous[:, None], witness, 1.0)
    clip_label = jnp.broadcast_to(label[:, None], (b, k))
    l_focal = softmax_focal_loss(out['logits'].reshape(b * k, -1), clip_label.reshape(-1),
                                 jnp.asarray(self.alpha), self.gamma, weight.reshape(-1))

    l_mil = mil_ranking_loss(out['score'], anomalous, self.margin, self.lambda_smooth,
                             self.lambda_sparse)
    flat = lambda a: a.reshape(b * k, -1)
    l_vae, l_recon, l_kl = vae_loss(flat(out['vae_recon']), flat(out['vae_in']),
                                    flat(out['vae_mu']), flat(out['vae_logvar']), self.vae_beta)

    total = self.w_reg * l_reg + self.w_focal * l_focal + self.w_mil * l_mil + self.w_vae * l_vae
    metrics = {'loss': total, 'reg': l_reg, 'focal': l_focal, 'mil': l_mil, 'vae': l_vae,
               'vae_recon': l_recon, 'vae_kl': l_kl,
               'score_gap': _bag_max_gap(out['score'], anomalous)}
    return total, (metrics, dict(mutated))

  def predict(self, variables, batch: dict) -> dict[str, jnp.ndarray]:
    """Inference on overlapping clips, `eval_stride` frames apart: 'video' [B, N, H, W, 3] ->
    'score' [B, K] (clip anomaly score), 'logits' [B, K, C], K = (N - T) // stride + 1. An
    optional 'background' [B, H, W, 3] replaces the clip median of the trunk input (streaming)."""
    out = self.model.apply(variables, batch['video'], train=False, stride=self.eval_stride,
                           background=batch.get('background'))
    return {'score': out['score'], 'logits': out['logits']}


@dataclasses.dataclass(frozen=True)
class HybridFeaturesSystem(HybridSystem):
  """The hybrid's temporal model and heads on published snippet features (no trunk).

  A training example is one video's snippet features binned into K*T segments (the published MIL
  bag of 32 = 4 clips of 8; vad_jax.data.published); the MIL bag is the video's K clips, the
  losses are the hybrid's. Scoring: clips of T snippets every `data.eval_stride` snippets over
  the whole video, each crop separately, class probabilities averaged over the crops; a
  snippet's score is then repeated over its `data.snippet_frames` frames by the evaluator.
  """
  train_fields: ClassVar[tuple[str, ...]] = ('features', 'label')
  predict_fields: ClassVar[tuple[str, ...]] = ('features',)

  @classmethod
  def check_config(cls, config) -> None:
    super().check_config(config)
    if config.model.trunk.get('kind', 'efficientnet') != 'none':
      raise ValueError("the 'hybrid_features' system reads features: set model.trunk.kind='none'")
    if config.eval_tta:
      raise ValueError(f'eval_tta={config.eval_tta!r} transforms videos; features have no views')

  @staticmethod
  def train_frames(config) -> int:
    """K clips of T segments: the MIL bag (the last clip has no regression target)."""
    return config.data.clips_per_video * config.data.clip_len

  @classmethod
  def data_request(cls, config) -> dict:
    return {'segments': cls.train_frames(config)}

  def definitions(self) -> dict:
    return {'score_definition': '1 - p(Normal) of the 14-class head per clip of snippets, class '
                                'probabilities averaged over the feature crops'}

  def predict(self, variables, batch: dict) -> dict[str, jnp.ndarray]:
    """'features' [B, N, C, F] (C crops) -> 'score' [B, K], 'logits' [B, K, classes] (log of the
    crop-averaged class probabilities), K = (N - T) // stride + 1."""
    x = batch['features']
    b, n, c, f = x.shape
    x = jnp.moveaxis(x, 2, 1).reshape(b * c, n, f)
    out = self.model.apply(variables, x, train=False, stride=self.eval_stride)
    probs = jax.nn.softmax(out['logits'], axis=-1)
    probs = probs.reshape(b, c, *probs.shape[1:]).mean(axis=1)            # [B, K, classes]
    return {'score': 1.0 - probs[..., NORMAL], 'logits': jnp.log(probs)}


def _bag_max_gap(score: jnp.ndarray, anomalous: jnp.ndarray) -> jnp.ndarray:
  """Mean top score of anomalous bags minus that of normal bags (a training-progress signal)."""
  top = score.max(axis=1)
  mean = lambda m: jnp.sum(top * m) / jnp.maximum(jnp.sum(m), 1.0)
  return mean(anomalous.astype(jnp.float32)) - mean((~anomalous).astype(jnp.float32))


def load_trunk(path: str, model, params: dict, batch_stats: dict) -> tuple[dict, dict]:
  """(params, batch_stats) with 'trunk' replaced by the converted Keras weights in `path`.

  Raises FileNotFoundError / ValueError (nothing is changed) when the file is missing or its
  shapes do not match the configured trunk.
  """
  from vad_jax.convert.keras import efficientnet_from_keras
  if not os.path.exists(path):
    raise FileNotFoundError(f'config.model.trunk.weights: no such file {path!r}')
  new = efficientnet_from_keras(path, width_mult=model.width_mult, depth_mult=model.depth_mult)
  for name, ours, theirs in (('params', params['trunk'], new['params']),
                             ('batch_stats', batch_stats['trunk'], new['batch_stats'])):
    if jax.tree.map(np.shape, ours) != jax.tree.map(np.shape, theirs):
      raise ValueError(f'{path}: trunk {name} do not match the configured trunk '
                       f'(width_mult={model.width_mult}, depth_mult={model.depth_mult})')
  cast = lambda ref, x: np.asarray(x, dtype=ref.dtype)
  return (dict(params, trunk=jax.tree.map(cast, params['trunk'], new['params'])),
          dict(batch_stats, trunk=jax.tree.map(cast, batch_stats['trunk'], new['batch_stats'])))
