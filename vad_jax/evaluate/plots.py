"""PNG figures of an evaluation: score vs ground truth per video, and the confusion matrix."""


import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vad_jax import storage  # noqa: E402
from vad_jax.evaluate.scoring import SplitScores  # noqa: E402


def pick_videos(scores: SplitScores, num: int, normal: int = 0) -> list[int]:
  """Up to `num` videos: anomalous ones of distinct classes first (leaving room for a normal
  one), then normal ones, then any others."""
  chosen, seen = [], set()
  for v, c in enumerate(scores.video_label):
    if c != normal and c not in seen and len(chosen) < num - 1:
      chosen.append(v)
      seen.add(c)
  normals = [v for v, c in enumerate(scores.video_label) if c == normal]
  chosen += normals[:max(num - len(chosen), 0)]
  rest = [v for v in range(len(scores.video_label)) if v not in chosen]
  return chosen + rest[:max(num - len(chosen), 0)]


def plot_scores(scores: SplitScores, path: str, class_names, num: int = 6,
                normal: int = 0) -> None:
  """One panel a video: the per-frame anomaly score, the annotated window shaded."""
  videos = pick_videos(scores, num, normal)
  if not videos:
    return
  cols = 2
  rows = -(-len(videos) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 2.2 * rows), squeeze=False)
  for ax, v in zip(axes.flat, videos):
    s, m = scores.video(v)
    t = np.arange(len(s))
    if len(m) and m.min() >= 0:                   # -1: no frame truth in this split
      ax.fill_between(t, 0, m, step='mid', color='tab:red', alpha=0.2, label='anomaly (truth)')
    ax.plot(t, s, color='tab:blue', lw=1.5, label='score')
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f'video {scores.video_index[v]}: {class_names[scores.video_label[v]]}', fontsize=9)
    ax.set_xlabel('frame', fontsize=8)
  for ax in list(axes.flat)[len(videos):]:
    ax.axis('off')
  axes.flat[0].legend(fontsize=7, loc='upper left')
  _save(fig, path)


def plot_confusion(cm: np.ndarray, path: str, class_names, title: str = 'confusion matrix') -> None:
  """Row-normalised confusion matrix with counts in the cells."""
  cm = np.asarray(cm)
  norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
  size = min(8, 2.5 + 0.4 * len(cm))
  fig, ax = plt.subplots(figsize=(size, size * 0.9))
  ax.imshow(norm, cmap='Blues', vmin=0, vmax=1)
  n = len(cm)
  ax.set_xticks(range(n), class_names[:n], rotation=60, ha='right', fontsize=8)
  ax.set_yticks(range(n), class_names[:n], fontsize=8)
  for i in range(n):
    for j in range(n):
      if cm[i, j]:
        ax.text(j, i, str(cm[i, j]), ha='center', va='center', fontsize=6,
                color='white' if norm[i, j] > 0.5 else 'black')
  ax.set_xlabel('predicted')
  ax.set_ylabel('true')
  ax.set_title(title)
  _save(fig, path)


def _save(fig, path: str) -> None:
  storage.save_figure(fig, path)
