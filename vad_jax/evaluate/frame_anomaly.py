"""The `frame_anomaly` evaluator: frame-level ROC-AUC / AP (the UCF-Crime protocol), per-class
frame AUC, and the confusion matrix of a clip classifier; saves per-frame scores (.npz) and plots.

Needs `predict` to give 'score' [B, K] (clip anomaly score) and 'logits' [B, K, C] for clips of
`data.clip_len` steps every `data.eval_stride` steps (a step is a frame, or a snippet of
`data.snippet_frames` frames). Frame metrics need the source's per-frame 'mask'; a split without
one (validation carved from weakly labelled training videos) gets the video-level metrics only:
video_auc / video_ap of each video's highest clip score against normal vs anomalous.

Component scores: every further output 'score_<name>' [B, K] (e.g. the SVDD distance or a
reconstruction error of a system whose 'score' combines several pieces of evidence) is scored the
same way and reported beside the combined one as `frame_auc_<name>` / `frame_ap_<name>` (or
`video_auc_<name>`), so one can see whether each head is useful; their per-frame scores are
saved in `components_<split>.npz` (same frame order as `scores_<split>.npz`).
"""


import numpy as np

from vad_jax import storage
from vad_jax.evaluate import alert, metrics, plots, scoring
from vad_jax.evaluate.scoring import SplitScores


def clip_truth(scores: SplitScores, normal: int = 0) -> np.ndarray:
  """Ground-truth class of every clip [V, K]: the video's class where at least half of the clip's
  frames lie in the annotated anomaly window, else `normal`; -1 past a video's last clip (uses
  frame masks: evaluation only)."""
  v, k = scores.clip_scores.shape
  steps = np.arange(k)[:, None] * scores.clip_stride + np.arange(scores.clip_len)   # [K, T]
  frames = (steps[..., None] * scores.snippet_frames +
            np.arange(scores.snippet_frames)).reshape(k, -1)        # [K, T * snippet_frames]
  out = np.full((v, k), -1, np.int32)
  for i in range(v):
    n = int(scores.num_clips[i])
    _, mask = scores.video(i)
    frac = mask[np.minimum(frames[:n], len(mask) - 1)].mean(1)
    out[i, :n] = np.where(frac >= 0.5, scores.video_label[i], normal)
  return out


def video_metrics(scores: SplitScores, normal: int = 0) -> dict:
  """Video-level detection: each video's highest clip score against anomalous (label != normal)."""
  y = (scores.video_label != normal).astype(np.int32)
  if y.min() == y.max():
    return {}
  v = scores.video_scores()
  return {'video_auc': metrics.roc_auc(y, v), 'video_ap': metrics.average_precision(y, v)}


def summarize(scores: SplitScores, class_names, normal: int = 0) -> dict:
  """Metrics as plain Python values (JSON-ready)."""
  out = {'num_videos': int(len(scores.video_index)), **video_metrics(scores, normal)}
  if not scores.has_frame_truth:
    return out
  labels, s = scores.frame_labels, scores.frame_scores
  out.update({
      'frame_auc': metrics.roc_auc(labels, s),
      'frame_ap': metrics.average_precision(labels, s),   # sklearn average_precision_score
      'frame_pr_auc': metrics.pr_auc_trapezoid(labels, s),  # XD-Violence repos' "AP"
      'num_frames': int(len(labels)),
      'anomalous_frame_fraction': float(labels.mean()),
  })
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
  scalars = ('frame_auc', 'frame_ap', 'clip_accuracy', 'video_auc')

  def __init__(self, config, class_names, normal_class: int = 0, num_plot_videos: int = 6,
               alert_false_alarm_rate: float = 0.05):
    self.alert_far = alert.check_rate(alert_false_alarm_rate)
    self.clip_len = config.data.clip_len
    self.stride = config.data.eval_stride
    self.snippet_frames = int(config.data.get('snippet_frames', 1))
    self.class_names = tuple(class_names)
    self.normal = normal_class
    self.num_plot_videos = num_plot_videos

  def check_split(self, labels: np.ndarray, split: str) -> None:
    """Frame AUC needs normal and anomalous videos: fail before training, not after."""
    if labels.min() == labels.max():
      raise ValueError(f'the {split} split ({len(labels)} videos) holds only class {labels[0]}: '
                       f'frame AUC is undefined; give it more videos (config.data.num_{split})')

  def evaluate(self, rows: dict) -> tuple[dict, tuple[SplitScores, dict]]:
    scores = scoring.from_rows(rows, self.clip_len, self.stride, self.snippet_frames)
    results = summarize(scores, self.class_names, self.normal)
    components = {}
    for key in sorted(rows):
      if not key.startswith('out/score_'):
        continue
      name = key[len('out/score_'):]
      part = scoring.from_rows(dict(rows, **{'out/score': rows[key]}), self.clip_len,
                               self.stride, self.snippet_frames)
      components[name] = part.frame_scores
      found = video_metrics(part, self.normal)
      if part.has_frame_truth:
        found.update(frame_auc=metrics.roc_auc(part.frame_labels, part.frame_scores),
                     frame_ap=metrics.average_precision(part.frame_labels, part.frame_scores))
      results.update({f'{k}_{name}': v for k, v in found.items()})
      shown = [f'{k}_{name}' for k in ('frame_auc', 'video_auc') if k in found]
      self.scalars = tuple(dict.fromkeys(self.scalars + tuple(shown)))   # console line
    return results, (scores, components)

  def alert_threshold(self, scores: SplitScores) -> dict:
    """The frame score above which `alert_false_alarm_rate` of the split's normal frames lie
    (frames labelled 0; without frame truth, the frames of normal videos): the alert threshold
    `python -m vad_jax.score` uses, chosen on validation."""
    if scores.has_frame_truth:
      normal = scores.frame_scores[scores.frame_labels == 0]
      kind = 'frames labelled normal'
    else:
      keep = np.repeat(scores.video_label == self.normal, np.diff(scores.offsets))
      normal = scores.frame_scores[keep]
      kind = 'frames of normal videos'
    return alert.threshold(normal, self.alert_far, f'frame scores of the validation {kind}')

  def definitions(self, config) -> dict:
    unit = 'frames' if self.snippet_frames == 1 else f'snippets of {self.snippet_frames} frames'
    return {'ap_definition': 'frame_ap: sklearn average_precision_score (step-wise, no '
                             'interpolation); frame_pr_auc: trapezoidal area under the PR curve, '
                             'sklearn auc(recall, precision), as the RTFM / XD-Violence code '
                             'reports AP',
            'frame_score_definition':
                f'clips of {self.clip_len} {unit} start every {self.stride}; a step scores the '
                'mean over the clips containing it (steps after the last clip take its score)'
                + ('' if self.snippet_frames == 1 else
                   f'; a snippet score is repeated over its {self.snippet_frames} frames'),
            'video_score_definition': "a video's highest clip score (video_auc / video_ap: "
                                      'anomalous vs normal videos)'}

  def write(self, artifact, results: dict, workdir: str, split: str,
            source=None) -> None:
    scores, components = artifact
    scores.save(storage.join(workdir, f'scores_{split}.npz'))
    if split == 'validation':
      alert.write(workdir, self.alert_threshold(scores))
    if components:
      storage.save_npz(storage.join(workdir, f'components_{split}.npz'), **components)
    plots.plot_scores(scores, storage.join(workdir, f'{split}_scores.png'), self.class_names,
                      self.num_plot_videos, self.normal)
    if 'clip_confusion_matrix' in results:
      plots.plot_confusion(np.array(results['clip_confusion_matrix']),
                         storage.join(workdir, f'{split}_confusion.png'), self.class_names,
                           'clip confusion matrix')
