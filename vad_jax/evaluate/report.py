"""Metrics of a scored split: frame-level ROC-AUC / AP and the 14-class head's confusion matrix."""

import numpy as np

from vad_jax.data.classes import CLASS_NAMES, NORMAL
from vad_jax.evaluate import metrics
from vad_jax.evaluate.scoring import SplitScores


def clip_truth(scores: SplitScores) -> np.ndarray:
  """Ground-truth class of every clip [V, K]: the video's class where at least half of the clip's
  frames lie in the annotated anomaly window, else Normal (uses frame masks: evaluation only)."""
  v, k = scores.clip_scores.shape
  frames = np.arange(k)[:, None] * scores.clip_stride + np.arange(scores.clip_len)   # [K, T]
  out = np.full((v, k), NORMAL, np.int32)
  for i in range(v):
    _, mask = scores.video(i)
    frac = mask[frames].mean(1)
    out[i] = np.where(frac >= 0.5, scores.video_label[i], NORMAL)
  return out


def summarize(scores: SplitScores) -> dict:
  """Metrics as plain Python values (JSON-ready)."""
  labels, s = scores.frame_labels, scores.frame_scores
  out = {
      'frame_auc': metrics.roc_auc(labels, s),
      'frame_ap': metrics.average_precision(labels, s),   # sklearn average_precision_score
      'num_videos': int(len(scores.video_index)),
      'num_frames': int(len(labels)),
      'anomalous_frame_fraction': float(labels.mean()),
  }
  # Frame AUC per anomaly class: that class's videos against all normal videos.
  per_class_auc = {}
  frame_video_label = np.repeat(scores.video_label, np.diff(scores.offsets))
  for c, name in enumerate(CLASS_NAMES):
    if c == NORMAL or not np.any(scores.video_label == c):
      continue
    keep = (frame_video_label == c) | (frame_video_label == NORMAL)
    if labels[keep].min() != labels[keep].max():
      per_class_auc[name] = metrics.roc_auc(labels[keep], s[keep])
  out['frame_auc_per_class'] = per_class_auc

  truth = clip_truth(scores).reshape(-1)
  pred = scores.clip_logits.argmax(-1).reshape(-1)
  cm = metrics.confusion_matrix(truth, pred, len(CLASS_NAMES))
  acc = metrics.per_class_accuracy(cm)
  out['clip_accuracy'] = float(np.trace(cm) / max(cm.sum(), 1))
  out['clip_per_class_accuracy'] = {n: (None if np.isnan(a) else float(a))
                                    for n, a in zip(CLASS_NAMES, acc)}
  out['clip_confusion_matrix'] = cm.tolist()
  return out
