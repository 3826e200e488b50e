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
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vad_jax.data.classes import NORMAL
from vad_jax.losses.focal import class_alpha_from_counts, softmax_focal_loss
from vad_jax.losses.mil import mil_ranking_loss
from vad_jax.losses.regression import smooth_l1
from vad_jax.losses.vae import vae_loss
from vad_jax.models import hybrid as hybrid_model
from vad_jax.models.precision import dtype_policy


@dataclasses.dataclass(frozen=True)
class HybridSystem:
  model: hybrid_model.HybridDetector
  alpha: tuple[float, ...]          # focal per-class weights from training class frequencies
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

  @classmethod
  def from_config(cls, config, class_counts) -> 'HybridSystem':
    dtype, param_dtype = dtype_policy(config.model)
    l = config.loss
    alpha = np.asarray(class_alpha_from_counts(jnp.asarray(class_counts, jnp.float32)))
    return cls(model=hybrid_model.from_config(config, dtype, param_dtype),
               alpha=tuple(float(a) for a in alpha), eval_stride=config.data.eval_stride,
               w_reg=l.w_reg, w_focal=l.w_focal,
               w_mil=l.w_mil, w_vae=l.w_vae, beta=l.smooth_l1_beta, gamma=l.focal_gamma,
               margin=l.mil_margin, lambda_smooth=l.mil_lambda_smooth,
               lambda_sparse=l.mil_lambda_sparse, vae_beta=l.vae_beta)

  @staticmethod
  def train_frames(config) -> int:
    """K clips of T frames plus `horizon` frames so the last clip has a regression target."""
    return config.data.clips_per_video * config.data.clip_len + config.model.horizon

  def init(self, rng: jax.Array, video: jnp.ndarray) -> dict[str, Any]:
    return self.model.init({'params': rng}, video, train=False)

  def loss(self, params, batch_stats, batch: dict[str, jnp.ndarray], rng: jax.Array):
    """batch: 'video' uint8 [B, N, H, W, 3], 'label' int32 [B]. -> (loss, (metrics, batch_stats))."""
    drop_rng, vae_rng = jax.random.split(rng)
    out, mutated = self.model.apply(
        {'params': params, 'batch_stats': batch_stats}, batch['video'], train=True,
        rngs={'dropout': drop_rng, 'vae': vae_rng}, mutable=['batch_stats'])
    label = batch['label']
    b, k = out['score'].shape
    anomalous = label != NORMAL

    # Regression on clips whose future frame lies inside the video (a static prefix of the K).
    n, t, h = batch['video'].shape[1], self.model.clip_len, self.model.horizon
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
    return total, (metrics, mutated['batch_stats'])

  def predict(self, variables, video: jnp.ndarray) -> dict[str, jnp.ndarray]:
    """Inference on overlapping clips, `eval_stride` frames apart: video [B, N, H, W, 3] ->
    'score' [B, K] (clip anomaly score), 'logits' [B, K, C], K = (N - T) // stride + 1."""
    out = self.model.apply(variables, video, train=False, stride=self.eval_stride)
    return {'score': out['score'], 'logits': out['logits']}


def _bag_max_gap(score: jnp.ndarray, anomalous: jnp.ndarray) -> jnp.ndarray:
  """Mean top score of anomalous bags minus that of normal bags (a training-progress signal)."""
  top = score.max(axis=1)
  mean = lambda m: jnp.sum(top * m) / jnp.maximum(jnp.sum(m), 1.0)
  return mean(anomalous.astype(jnp.float32)) - mean((~anomalous).astype(jnp.float32))
