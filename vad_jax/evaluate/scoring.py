"""Score every video of a split frame by frame, and save the scores so anyone can recompute a metric.

Clips of T frames start every S frames (S = `data.eval_stride` <= T). A frame's score is the mean
of the scores of the clips that contain it; frames after the last whole clip take the last clip's
score. With S = T this is the UCF-Crime protocol (each clip's score repeated over its frames);
S < T localises the window S frames finely instead of T, at the cost of more clips through the
temporal model only (the per-frame trunk runs once per frame either way).

Snippet features (one vector per `snippet_frames` frames, e.g. I3D's 16): the same per step
(snippet), then each snippet's score is repeated over its frames (the published protocol) and
cut or edge-padded to the number of annotated frames. A split without per-frame truth (a
validation split carved from weakly labelled training videos) gets frame labels -1.
"""

import dataclasses

import numpy as np

from vad_jax import storage


@dataclasses.dataclass
class SplitScores:
  """Per-video results of one split, videos in index order.

  frame_scores / frame_labels: concatenated over videos, [sum_v N_v]; video v is
  frames[offsets[v]:offsets[v+1]]; frame_labels int8, -1 where the split has no frame truth.
  clip_scores [V, K], clip_logits [V, K, C]; clip k covers steps (frames, or snippets of
  snippet_frames frames) k * clip_stride .. k * clip_stride + clip_len - 1; video v has
  num_clips[v] clips (its entries past them are NaN: videos may differ in length).
  """
  video_index: np.ndarray
  video_label: np.ndarray
  offsets: np.ndarray
  frame_scores: np.ndarray
  frame_labels: np.ndarray
  clip_scores: np.ndarray
  clip_logits: np.ndarray
  num_clips: np.ndarray
  clip_len: int
  clip_stride: int
  snippet_frames: int = 1

  @property
  def has_frame_truth(self) -> bool:
    return bool(len(self.frame_labels)) and int(self.frame_labels.min()) >= 0

  def video_scores(self) -> np.ndarray:
    """float [V]: each video's highest clip score (video-level anomaly score)."""
    return np.nanmax(self.clip_scores, axis=1)

  def video(self, v: int) -> tuple[np.ndarray, np.ndarray]:
    """(frame scores [N], frame labels [N]) of the v-th video."""
    s = slice(self.offsets[v], self.offsets[v + 1])
    return self.frame_scores[s], self.frame_labels[s]

  def save(self, path: str) -> None:
    """Writes an .npz whole or not at all (local or gs://: vad_jax.storage)."""
    storage.save_npz(path, **dataclasses.asdict(self))

  @classmethod
  def load(cls, path: str) -> 'SplitScores':
    f = storage.load_npz(path)
    fields = {k.name: f[k.name] for k in dataclasses.fields(cls)}
    return cls(**dict(fields, clip_len=int(fields['clip_len']),
                      clip_stride=int(fields['clip_stride']),
                      snippet_frames=int(fields['snippet_frames'])))


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


def expand_snippets(step_scores: np.ndarray, snippet_frames: int, num_frames: int) -> np.ndarray:
  """[S] snippet scores -> [num_frames]: each repeated `snippet_frames` times, then cut to
  num_frames or padded with the last snippet's score (feature sets whose snippet count and
  annotated frame count disagree by a partial snippet)."""
  frames = np.repeat(np.asarray(step_scores), snippet_frames)
  if len(frames) >= num_frames:
    return frames[:num_frames]
  return np.concatenate([frames, np.full(num_frames - len(frames), frames[-1])])


def stitch_windows(rows: dict, clip_len: int, stride: int, snippet_frames: int = 1) -> dict:
  """Rows of evaluation windows ('window_start'; vad_jax.data.pipeline.eval_windows) -> rows of
  whole videos, as if each had been scored in one piece: consecutive windows share
  clip_len - stride steps, so window w's clips continue window w-1's grid of clip starts and
  the video's clips are the concatenation of each window's whole clips. Frames (masks) are
  taken from each window up to where the next one starts."""
  order = np.lexsort((rows['window_start'], rows['index']))
  rows = {k: v[order] for k, v in rows.items()}
  videos = np.unique(rows['index'])
  first = np.searchsorted(rows['index'], videos)
  bounds = list(zip(first, list(first[1:]) + [len(rows['index'])]))
  score, logits = rows['out/score'], rows['out/logits']
  clips, clip_logits, masks, lengths = [], [], [], []
  for a, b in bounds:
    starts, lens = rows['window_start'][a:b], rows['length'][a:b]
    k = np.maximum((lens - clip_len) // stride + 1, 0)
    clips.append(np.concatenate([score[r, :n] for r, n in zip(range(a, b), k)]))
    clip_logits.append(np.concatenate([logits[r, :n] for r, n in zip(range(a, b), k)]))
    lengths.append(int(starts[-1] + lens[-1]))
    if 'mask' in rows:
      own = [(starts[i + 1] - starts[i]) * snippet_frames for i in range(len(starts) - 1)]
      own.append(int(rows['num_frames'][b - 1]))
      masks.append(np.concatenate([rows['mask'][r, :n] for r, n in zip(range(a, b), own)]))
  kmax = max(len(c) for c in clips)
  pad = lambda a, n, fill: np.concatenate([a, np.full((n - len(a),) + a.shape[1:], fill, a.dtype)])
  out = {'index': videos, 'label': rows['label'][first],
         'length': np.asarray(lengths, np.int64),
         'out/score': np.stack([pad(c, kmax, np.nan) for c in clips]),
         'out/logits': np.stack([pad(c, kmax, np.nan) for c in clip_logits])}
  if masks:
    fmax = max(len(m) for m in masks)
    out['mask'] = np.stack([pad(m, fmax, 0) for m in masks])
    out['num_frames'] = np.asarray([len(m) for m in masks], np.int64)
  return out


def from_rows(rows: dict, clip_len: int, stride: int, snippet_frames: int = 1) -> SplitScores:
  """SplitScores from gathered evaluation rows (vad_jax.evaluate.runner.predict_split) of a
  system whose `predict` gives 'score' [B, K] and 'logits' [B, K, C] for clips of `clip_len`
  steps every `stride` steps. Videos may differ in length ('length' steps; sequences were
  padded): only the clips that end inside a video count, K_v = (length_v - clip_len) // stride
  + 1. With 'mask' rows the frame labels are mask[:num_frames] ('num_frames', else length *
  snippet_frames); without, -1. Rows of evaluation windows are stitched first."""
  if 'window_start' in rows:
    rows = stitch_windows(rows, clip_len, stride, snippet_frames)
  lengths = rows['length'].astype(np.int64)
  if lengths.min() < clip_len:
    v = int(rows['index'][np.argmin(lengths)])
    raise ValueError(f'video {v} has {lengths.min()} frames, fewer than one clip ({clip_len})')
  num_clips = (lengths - clip_len) // stride + 1
  score, logits = rows['out/score'], rows['out/logits']
  if num_clips.max() > score.shape[1]:
    raise ValueError(f'predict gave {score.shape[1]} clips for a video of {lengths.max()} frames '
                     f'({num_clips.max()} clips of {clip_len} every {stride})')
  valid = np.arange(score.shape[1]) < num_clips[:, None]                 # [V, K]
  clip_scores = np.where(valid, score, np.nan)
  clip_logits = np.where(valid[..., None], logits, np.nan)
  num_frames = rows.get('num_frames', lengths * snippet_frames).astype(np.int64)
  per_video = [expand_snippets(frame_scores(c[:k], n, clip_len, stride), snippet_frames, f)
               for c, k, n, f in zip(clip_scores, num_clips, lengths, num_frames)]
  if 'mask' in rows:
    labels = [m[:f].astype(np.int8) for m, f in zip(rows['mask'], num_frames)]
  else:
    labels = [np.full(f, -1, np.int8) for f in num_frames]
  return SplitScores(
      video_index=rows['index'].astype(np.int32),
      video_label=rows['label'].astype(np.int32),
      offsets=np.concatenate([[0], np.cumsum(num_frames)]).astype(np.int64),
      frame_scores=np.concatenate(per_video),
      frame_labels=np.concatenate(labels),
      clip_scores=clip_scores[:, :num_clips.max()],
      clip_logits=clip_logits[:, :num_clips.max()],
      num_clips=num_clips,
      clip_len=int(clip_len), clip_stride=int(stride), snippet_frames=int(snippet_frames))
