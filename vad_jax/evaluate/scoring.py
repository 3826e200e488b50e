"""Score every video of a split frame by frame, and save the scores so anyone can recompute a metric.

Clips of T frames start every S frames (S = `data.eval_stride` <= T). A frame's score is the mean
of the scores of the clips that contain it; frames after the last whole clip take the last clip's
score. With S = T this is the UCF-Crime protocol (each clip's score repeated over its frames);
S < T localises the window S frames finely instead of T, at the cost of more clips through the
temporal model only (the per-frame trunk runs once per frame either way).
"""

import dataclasses
import os

import numpy as np
from jax.experimental import multihost_utils

from vad_jax.train import mesh as mesh_lib


@dataclasses.dataclass
class SplitScores:
  """Per-video results of one split, videos in index order.

  frame_scores / frame_labels: concatenated over videos, [sum_v N_v]; video v is
  frames[offsets[v]:offsets[v+1]]. clip_scores [V, K], clip_logits [V, K, C]; clip k covers
  frames k * clip_stride .. k * clip_stride + clip_len - 1.
  """
  video_index: np.ndarray
  video_label: np.ndarray
  offsets: np.ndarray
  frame_scores: np.ndarray
  frame_labels: np.ndarray
  clip_scores: np.ndarray
  clip_logits: np.ndarray
  clip_len: int
  clip_stride: int

  def video(self, v: int) -> tuple[np.ndarray, np.ndarray]:
    """(frame scores [N], frame labels [N]) of the v-th video."""
    s = slice(self.offsets[v], self.offsets[v + 1])
    return self.frame_scores[s], self.frame_labels[s]

  def save(self, path: str) -> None:
    """Writes an .npz atomically (a temporary file renamed into place)."""
    tmp = path + '.tmp.npz'
    np.savez_compressed(tmp, **dataclasses.asdict(self))
    os.replace(tmp, path)

  @classmethod
  def load(cls, path: str) -> 'SplitScores':
    with np.load(path) as f:
      fields = {k.name: f[k.name] for k in dataclasses.fields(cls)}
    return cls(**dict(fields, clip_len=int(fields['clip_len']),
                      clip_stride=int(fields['clip_stride'])))


def frame_scores(clip_scores: np.ndarray, num_frames: int, clip_len: int,
                 stride: int | None = None) -> np.ndarray:
  """clip_scores [K] of clips starting every `stride` frames -> [num_frames]: each frame gets the
  mean score of the clips containing it; frames after the last clip take the last clip's score."""
  stride = stride or clip_len
  total, count = np.zeros(num_frames), np.zeros(num_frames)
  for k, c in enumerate(np.asarray(clip_scores, np.float64)):
    total[k * stride:k * stride + clip_len] += c
    count[k * stride:k * stride + clip_len] += 1
  return np.where(count > 0, total / np.maximum(count, 1), clip_scores[-1])


def score_split(predict, state, batches, mesh, clip_len: int, stride: int) -> SplitScores:
  """Runs `predict` (vad_jax.train.step.make_predict_step) over `batches` (eval_batches)."""
  rows = []
  for batch in batches:
    video = mesh_lib.to_global({'video': batch['video']}, mesh)['video']
    out = multihost_utils.process_allgather(predict(state, video), tiled=True)
    meta = multihost_utils.process_allgather(
        {k: batch[k] for k in ('index', 'label', 'mask')}, tiled=True)
    for i in np.flatnonzero(meta['index'] >= 0):
      rows.append((int(meta['index'][i]), int(meta['label'][i]), np.asarray(meta['mask'][i]),
                   np.asarray(out['score'][i]), np.asarray(out['logits'][i])))
  rows.sort(key=lambda r: r[0])
  lengths = [len(r[2]) for r in rows]
  return SplitScores(
      video_index=np.array([r[0] for r in rows], np.int32),
      video_label=np.array([r[1] for r in rows], np.int32),
      offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
      frame_scores=np.concatenate([frame_scores(r[3], n, clip_len, stride)
                                   for r, n in zip(rows, lengths)]),
      frame_labels=np.concatenate([r[2] for r in rows]).astype(np.uint8),
      clip_scores=np.stack([r[3] for r in rows]),
      clip_logits=np.stack([r[4] for r in rows]),
      clip_len=int(clip_len), clip_stride=int(stride))
