"""Seed 001 as a system: the Deep SVDD + VAE detector (vad_jax.models.svdd_vae) under weak labels.

A training example is a video of K*T frames with its video-level class only (UCF-Crime's
training labels): K disjoint clips of T frames, the MIL bag. Losses, per clip k of video b:
  * classification (focal, gamma 2, alpha from the labels it sees): every clip of a normal video
    is labelled Normal; an anomalous video labels only its MIL witness (the clip whose
    1 - p(Normal) is highest) with its class, as the hybrid does;
  * binary (MIL binary cross-entropy): the bag's highest binary logit against the video being
    anomalous (sigmoid is monotone, so max of the logits = logit of the max probability);
  * Deep SVDD (one-class): mean squared distance to the fixed centre c of the clips of NORMAL
    videos only; c is computed once before training (`prepare`) from normal training clips, its
    entries near 0 pushed to +-eps, and kept in the non-trainable collection 'svdd';
  * feature VAE (latent 128, beta 1.0) on the stop-gradient embedding, and the convolutional VAE
    on the frames (`conv_beta`), both trained on normal videos only: reconstruction error is
    then evidence of "not seen in normal data".
Total = w_cls * cls + w_binary * binary + w_svdd * svdd + w_vae * vae + w_conv * conv_vae
(seed: 0.2 on the feature VAE). With mixup a batch mixes two videos (lam, 'label_b'): the
supervised terms are lam * L(label) + (1 - lam) * L(label_b); the one-class terms weight a clip
by how normal its mixture is, lam * [label normal] + (1 - lam) * [label_b normal].

THE anomaly score of a clip (`anomaly_score`, defined here and nowhere else) combines the
evidence: the weighted mean of
  cls     1 - p(Normal) of the 14-class head            in [0, 1]
  binary  sigmoid(binary logit)                         in [0, 1]
  svdd    sigmoid((d - mu_d) / sd_d), d = ||z - c||^2
  vae     sigmoid((e - mu_e) / sd_e), e = feature reconstruction MSE
  conv    sigmoid((r - mu_r) / sd_r), r = mean frame reconstruction MSE over the clip
with (mu, sd) of each unbounded score on normal training clips, tracked during training as
running statistics (collection 'score_stats', momentum `stats_momentum`), so that every piece is
on the same [0, 1] scale. Each piece is also returned as 'score_<name>' so the evaluator reports
its own frame AUC beside the combined one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from vad_jax.classes import CLASS_NAMES, NORMAL
from vad_jax.data import mixing
from vad_jax.losses.focal import softmax_focal_loss
from vad_jax.losses.svdd import svdd_center, svdd_distance, svdd_loss
from vad_jax.losses.vae import vae_loss
from vad_jax.models import svdd_vae as svdd_vae_model
from vad_jax.models.precision import dtype_policy
from vad_jax.systems import clips
from vad_jax.systems.base import System

COMPONENTS = ('cls', 'binary', 'svdd', 'vae', 'conv')
UNBOUNDED = ('svdd', 'vae', 'conv')        # standardised by their normal-training statistics


def anomaly_score(parts: dict[str, jnp.ndarray], stats: dict[str, jnp.ndarray],
                  weights: dict[str, float]) -> dict[str, jnp.ndarray]:
  """Clip anomaly evidence -> {'score': combined [...], 'score_<name>': each piece [...]}.

  parts: raw scores by name (COMPONENTS; 'conv' may be absent), cls/binary already in [0, 1];
  stats: {name: [2] (mean, variance)} of each unbounded score on normal training clips; weights:
  {name: w >= 0}; pieces with weight 0 or absent are left out of the combination (but still
  reported). Unbounded pieces are mapped to sigmoid((x - mean) / sd): 0.5 at the typical normal
  clip, -> 1 for clips far outside the normal range.
  """
  out, total, norm = {}, 0.0, 0.0
  for name in COMPONENTS:
    if name not in parts:
      continue
    x = parts[name].astype(jnp.float32)
    if name in UNBOUNDED:
      mean, var = stats[name][0], stats[name][1]
      x = jax.nn.sigmoid((x - mean) * jax.lax.rsqrt(var + 1e-12))
    out[f'score_{name}'] = x
    w = float(weights.get(name, 0.0))
    if w > 0:
      total, norm = total + w * x, norm + w
  if norm == 0:
    raise ValueError(f'score weights {weights} leave nothing to combine')
  out['score'] = total / norm
  return out


@dataclasses.dataclass(frozen=True)
class SVDDVAESystem(System):
  task: ClassVar[str] = 'anomaly'
  train_fields: ClassVar[tuple[str, ...]] = ('video', 'label')
  predict_fields: ClassVar[tuple[str, ...]] = ('video',)
  mix_field: ClassVar[str | None] = 'video'

  model: svdd_vae_model.SVDDVAEDetector
  alpha: tuple[float, ...]             # focal per-class weights (clips.focal_alpha)
  score_weights: tuple[tuple[str, float], ...]
  eval_stride: int | None = None
  w_cls: float = 1.0
  w_binary: float = 0.5
  w_svdd: float = 0.1
  w_vae: float = 0.2
  w_conv: float = 0.2
  gamma: float = 2.0
  vae_beta: float = 1.0
  conv_beta: float = 1.0
  svdd_eps: float = 0.1
  stats_momentum: float = 0.99
  center_batches: int = 8

  @classmethod
  def check_config(cls, config) -> None:
    clips.check_clip_config(config)
    m, l = config.model, config.loss
    for key in ('w_cls', 'w_binary', 'w_svdd', 'w_vae', 'w_conv', 'vae_beta', 'conv_beta'):
      if l[key] < 0:
        raise ValueError(f'loss.{key}={l[key]} must be >= 0')
    w = dict(config.score.weights)
    unknown = sorted(set(w) - set(COMPONENTS))
    if unknown or any(v < 0 for v in w.values()) or not any(v > 0 for v in w.values()):
      raise ValueError(f'score.weights={w}: names from {COMPONENTS}, weights >= 0, one > 0')
    if w.get('conv', 0) > 0 and not m.conv_vae:
      raise ValueError("score.weights.conv > 0 needs model.conv_vae=True")
    if not 0 <= config.score.stats_momentum < 1:
      raise ValueError(f'score.stats_momentum={config.score.stats_momentum} must be in [0, 1)')

  @classmethod
  def data_request(cls, config) -> dict:
    return {'train_frames': config.data.clips_per_video * config.data.clip_len}

  @classmethod
  def examples_per_step(cls, config) -> int:
    return clips.videos_per_step(config)

  @classmethod
  def from_config(cls, config, info) -> 'SVDDVAESystem':
    names = tuple(info.class_names)
    if names[NORMAL] != CLASS_NAMES[NORMAL] or len(names) != config.model.num_classes:
      raise ValueError(f'svdd_vae needs {config.model.num_classes} classes (model.num_classes), '
                       f'{CLASS_NAMES[NORMAL]!r} first; the data gives {list(names)}')
    if 'video' not in info.element_spec:
      raise ValueError(f"svdd_vae reads 'video'; the data source {config.data.source!r} gives "
                       f'{sorted(info.element_spec)}')
    dtype, param_dtype = dtype_policy(config.model)
    l = config.loss
    return cls(model=svdd_vae_model.from_config(config, dtype, param_dtype, frozen_stages=0),
               alpha=clips.focal_alpha(info.class_counts, config.data.clips_per_video),
               score_weights=tuple((k, float(v)) for k, v in config.score.weights.items()),
               eval_stride=config.data.eval_stride, w_cls=l.w_cls, w_binary=l.w_binary,
               w_svdd=l.w_svdd, w_vae=l.w_vae, w_conv=l.w_conv, gamma=l.focal_gamma,
               vae_beta=l.vae_beta, conv_beta=l.conv_beta, svdd_eps=l.svdd_eps,
               stats_momentum=config.score.stats_momentum,
               center_batches=config.score.center_batches)

  # ------------------------------------------------------------------ variables
  def init(self, rng: jax.Array, spec: dict) -> dict[str, Any]:
    video = jnp.zeros(spec['video'].shape, spec['video'].dtype)
    variables = dict(self.model.init({'params': rng}, video, train=False))
    stats = {n: jnp.array([0.0, 1.0], jnp.float32) for n in self._unbounded()}
    return dict(variables, svdd={'center': jnp.zeros((self.model.svdd_dim,), jnp.float32)},
                score_stats=stats)

  def _unbounded(self) -> tuple[str, ...]:
    return tuple(n for n in UNBOUNDED if n != 'conv' or self.model.conv_vae)

  @staticmethod
  def _model_variables(variables) -> dict:
    return {k: v for k, v in variables.items() if k in ('params', 'batch_stats')}

  def prepare(self, variables, batches):
    """Deep SVDD's centre: the mean projection of the clips of normal training videos under the
    initial weights (first `center_batches` batches, all processes), entries near 0 pushed to
    +-svdd_eps (vad_jax.losses.svdd.svdd_center)."""
    from jax.experimental import multihost_utils
    apply = jax.jit(lambda v, x: self.model.apply(v, x, train=False)['svdd_z'])
    model_vars = self._model_variables(variables)
    total = np.zeros((self.model.svdd_dim,), np.float64)
    count = 0.0
    for i, batch in enumerate(batches):
      if i >= self.center_batches:
        break
      z = np.asarray(apply(model_vars, jnp.asarray(batch['video'])), np.float64)   # [B, K, S]
      keep = (np.asarray(batch['label']) == NORMAL) & (np.asarray(batch['index']) >= 0)
      total += z[keep].reshape(-1, z.shape[-1]).sum(0)
      count += keep.sum() * z.shape[1]
    total, count = (np.asarray(x).sum(0) for x in multihost_utils.process_allgather(
        (total, np.float64(count))))
    if count == 0:
      raise ValueError('no normal training video in the first center_batches batches: Deep '
                       'SVDD needs normal data for its centre (score.center_batches)')
    mean = jnp.asarray(total / count, jnp.float32)[None]
    center = np.asarray(svdd_center(mean, eps=self.svdd_eps))
    logging.info('Deep SVDD centre from %d normal training clips: |c| = %.3f', int(count),
                 float(np.linalg.norm(center)))
    return dict(variables, svdd={'center': center})

  # ------------------------------------------------------------------ loss
  def loss(self, variables, batch: dict, rng: jax.Array):
    """batch: 'video' [B, K*T, H, W, 3] (uint8, or float32 when mixed), 'label' int32 [B]
    (+ 'label_b', 'mix_lam' [B] with mixup). -> (loss, (metrics, {'batch_stats', 'score_stats'}))."""
    drop_rng, vae_rng = jax.random.split(rng)
    out, mutated = self.model.apply(self._model_variables(variables), batch['video'], train=True,
                                    rngs={'dropout': drop_rng, 'vae': vae_rng},
                                    mutable=['batch_stats'])
    b, k = out['binary_logit'].shape
    label = batch['label']
    label_b = batch.get('label_b', label)
    lam = jnp.mean(batch['mix_lam']) if 'mix_lam' in batch else jnp.float32(1.0)
    center = variables['svdd']['center']

    cls_score = 1.0 - jax.nn.softmax(out['logits'], -1)[..., NORMAL]           # [B, K]
    witness = jax.nn.one_hot(jnp.argmax(jax.lax.stop_gradient(cls_score), axis=1), k)
    logits = out['logits'].reshape(b * k, -1)
    bag_logit = out['binary_logit'].max(axis=1)                                # [B]

    def supervised(y):
      anomalous = y != NORMAL
      weight = jnp.where(anomalous[:, None], witness, 1.0).reshape(-1)
      clip_label = jnp.broadcast_to(y[:, None], (b, k)).reshape(-1)
      focal = softmax_focal_loss(logits, clip_label, jnp.asarray(self.alpha), self.gamma, weight)
      bce = jnp.mean(optax.losses.sigmoid_binary_cross_entropy(
          bag_logit, anomalous.astype(jnp.float32)))
      return focal, bce

    focal_a, bce_a = supervised(label)
    focal_b, bce_b = supervised(label_b) if 'label_b' in batch else (focal_a, bce_a)
    l_cls = mixing.mixed(focal_a, focal_b, lam)
    l_binary = mixing.mixed(bce_a, bce_b, lam)

    # One-class terms: how normal each video's (mixed) content is.
    normal = mixing.mixed(label == NORMAL, label_b == NORMAL, lam).astype(jnp.float32)
    clip_w = jnp.repeat(normal, k)                                             # [B*K]
    z = out['svdd_z'].reshape(b * k, -1)
    l_svdd = svdd_loss(z, center, clip_w)
    flat = lambda a: a.reshape(b * k, -1)
    l_vae, l_recon, l_kl = vae_loss(flat(out['vae_recon']), flat(out['vae_in']),
                                    flat(out['vae_mu']), flat(out['vae_logvar']),
                                    self.vae_beta, clip_w)
    total = (self.w_cls * l_cls + self.w_binary * l_binary + self.w_svdd * l_svdd +
             self.w_vae * l_vae)
    metrics = {'cls': l_cls, 'binary': l_binary, 'svdd': l_svdd, 'vae': l_vae,
               'vae_recon': l_recon, 'vae_kl': l_kl}
    raw = {'svdd': svdd_distance(z, center),
           'vae': jnp.mean(jnp.square(flat(out['vae_recon']) - flat(out['vae_in'])), -1)}
    if self.model.conv_vae:
      frame_w = jnp.broadcast_to(normal[:, None], out['conv_mse'].shape)
      per_frame = out['conv_mse'] + self.conv_beta * out['conv_kl']
      l_conv = jnp.sum(frame_w * per_frame) / jnp.maximum(jnp.sum(frame_w), 1e-6)
      total = total + self.w_conv * l_conv
      metrics.update(conv_vae=l_conv, conv_mse=jnp.sum(frame_w * out['conv_mse']) /
                     jnp.maximum(jnp.sum(frame_w), 1e-6))
      raw['conv'] = out['conv_err'].reshape(-1)
    metrics['loss'] = total

    # Running statistics of the unbounded scores on normal clips (they scale `anomaly_score`).
    m = self.stats_momentum
    hard = clip_w >= 0.5                                 # clips of (mostly) normal videos
    n = jnp.sum(hard)
    stats = {}
    for name in self._unbounded():
      x = jax.lax.stop_gradient(raw[name]).astype(jnp.float32)
      mean = jnp.sum(jnp.where(hard, x, 0)) / jnp.maximum(n, 1)
      var = jnp.sum(jnp.where(hard, jnp.square(x - mean), 0)) / jnp.maximum(n, 1)
      old = variables['score_stats'][name]
      new = m * old + (1 - m) * jnp.stack([mean, var])
      stats[name] = jnp.where(n > 1, new, old)
    return total, (metrics, {'batch_stats': mutated['batch_stats'], 'score_stats': stats})

  # ------------------------------------------------------------------ inference
  def predict(self, variables, batch: dict) -> dict[str, jnp.ndarray]:
    """Overlapping clips `eval_stride` frames apart: 'video' [B, N, H, W, 3] -> 'score' [B, K]
    (`anomaly_score`), 'score_<name>' [B, K] for each piece, 'logits' [B, K, C]."""
    out = self.model.apply(self._model_variables(variables), batch['video'], train=False,
                           stride=self.eval_stride, background=batch.get('background'))
    parts = {
        'cls': 1.0 - jax.nn.softmax(out['logits'], -1)[..., NORMAL],
        'binary': jax.nn.sigmoid(out['binary_logit']),
        'svdd': svdd_distance(out['svdd_z'], variables['svdd']['center']),
        'vae': jnp.mean(jnp.square(out['vae_recon'] - out['vae_in']), -1),
    }
    if self.model.conv_vae:
      parts['conv'] = out['conv_err']
    scores = anomaly_score(parts, variables['score_stats'], dict(self.score_weights))
    return dict(scores, logits=out['logits'])

  def definitions(self) -> dict:
    w = ', '.join(f'{k} {v:g}' for k, v in self.score_weights if v > 0)
    return {'score_definition':
                f'weighted mean ({w}) of clip evidence: cls = 1 - p(Normal), binary = '
                'sigmoid(binary logit), svdd / vae / conv = sigmoid((x - mean) / sd) of the SVDD '
                'distance, feature-VAE and frame-VAE reconstruction errors, with (mean, sd) '
                'tracked on normal training clips (vad_jax.systems.svdd_vae.anomaly_score); '
                'score_<name> are the pieces'}
