"""The `frame_anomaly` evaluator: frame-level ROC-AUC / AP (the UCF-Crime protocol), per-class
frame AUC, and the confusion matrix of a clip classifier; saves per-frame scores (.npz) and plots.

Needs `predict` to give 'score' [B, K] (clip anomaly score) and 'logits' [B, K, C] for clips of
`data.clip_len` frames every `data.eval_stride` frames, and the source to give 'mask'.
"""

import os

import numpy as np

from vad_jax.evaluate import metrics, plots, scoring
from vad_jax.evaluate.scoring import SplitScores


def clip_truth(scores: SplitScores, normal: int = 0) -> np.ndarray:
  """Ground-truth class of every clip [V, K]: the video's class where at least half of the clip's
  frames lie in the annotated anomaly window, else `normal`; -1 past a video's last clip (uses
  frame masks: evaluation only)."""
  v, k = scores.clip_scores.shape
  frames = np.arange(k)[:, None] * scores.clip_stride + np.arange(scores.clip_len)   # [K, T]
  out = np.full((v, k), -1, np.int32)
  for i in range(v):
    n = int(scores.num_clips[i])
    _, mask = scores.video(i)
    frac = mask[frames[:n]].mean(1)
    out[i, :n] = np.where(frac >= 0.5, scores.video_label[i], normal)
  return out


def summarize(scores: SplitScores, class_names, normal: int = 0) -> dict:
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
  for c, name in enumerate(class_names):
    if c == normal or not np.any(scores.video_label == c):
      continue
    keep = (frame_video_label == c) | (frame_video_label == normal)
    if labels[keep].min() != labels[keep].max():
      per_class_auc[name] = metrics.roc_auc(labels[keep], s[keep])
  out['frame_auc_per_class'] = per_class_auc

  truth = clip_truth(scores, normal)
  valid = truth >= 0
  pred = np.where(valid[..., None], scores.clip_logits, 0).argmax(-1)
  cm = metrics.confusion_matrix(truth[valid], pred[valid], len(class_names))
  acc = metrics.per_class_accuracy(cm)
  out['clip_accuracy'] = float(np.trace(cm) / max(cm.sum(), 1))
  out['clip_per_class_accuracy'] = {n: (None if np.isnan(a) else float(a))
                                    for n, a in zip(class_names, acc)}
  out['clip_confusion_matrix'] = cm.tolist()
  return out


class FrameAnomaly:
  """Evaluator (vad_jax.evaluate.evaluators). Logged scalars: frame_auc, frame_ap, clip_accuracy."""
  scalars = ('frame_auc', 'frame_ap', 'clip_accuracy')

  def __init__(self, config, class_names, normal_class: int = 0, num_plot_videos: int = 6):
    self.clip_len = config.data.clip_len
    self.stride = config.data.eval_stride
    self.class_names = tuple(class_names)
    self.normal = normal_class
    self.num_plot_videos = num_plot_videos

  def check_split(self, labels: np.ndarray, split: str) -> None:
    """Frame AUC needs normal and anomalous videos: fail before training, not after."""
    if labels.min() == labels.max():
      raise ValueError(f'the {split} split ({len(labels)} videos) holds only class {labels[0]}: '
                       f'frame AUC is undefined; give it more videos (config.data.num_{split})')

  def evaluate(self, rows: dict) -> tuple[dict, SplitScores]:
    scores = scoring.from_rows(rows, self.clip_len, self.stride)
    return summarize(scores, self.class_names, self.normal), scores

  def definitions(self, config) -> dict:
    return {'ap_definition': 'sklearn average_precision_score (step-wise, no interpolation)',
            'frame_score_definition':
                f'clips of {self.clip_len} frames start every {self.stride} frames; a frame scores '
                'the mean over the clips containing it (frames after the last clip take its score)'}

  def write(self, scores: SplitScores, results: dict, workdir: str, split: str) -> None:
    scores.save(os.path.join(workdir, f'scores_{split}.npz'))
    plots.plot_scores(scores, os.path.join(workdir, f'{split}_scores.png'), self.class_names,
                      self.num_plot_videos, self.normal)
    plots.plot_confusion(np.array(results['clip_confusion_matrix']),
                         os.path.join(workdir, f'{split}_confusion.png'), self.class_names,
                         'clip confusion matrix')
