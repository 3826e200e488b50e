"""Scoring long videos window by window equals scoring them whole (vad_jax.data.pipeline
eval windows + vad_jax.evaluate.scoring.stitch_windows), checked with an independent clip
scorer on sequences of many lengths."""

import ml_collections
import numpy as np
import pytest

from vad_jax.data import pipeline
from vad_jax.evaluate import scoring


class _Sequences:
  """Feature sequences [L, 1] of given lengths; masks of snippet_frames frames per step."""
  sequence_field = 'features'

  def __init__(self, lengths, snippet_frames=1, seed=0):
    rng = np.random.default_rng(seed)
    self.snippet_frames = snippet_frames
    self._x = [rng.random((n, 1)).astype(np.float32) for n in lengths]
    self._m = [(rng.random(n * snippet_frames) < 0.3).astype(np.uint8) for n in lengths]

  def __len__(self):
    return len(self._x)

  def lengths(self):
    return np.array([len(x) for x in self._x])

  def __getitem__(self, i):
    return {'features': self._x[i], 'mask': self._m[i], 'label': np.int32(i % 2),
            'index': np.int32(i)}

  def eval_transform(self, ex):
    return ex


def _predict(batch, clip_len, stride):
  """Clip score = mean of the clip's values, logits = [v, -v]: K = (N - T) // S + 1 clips."""
  x = batch['features'][..., 0]
  k = (x.shape[1] - clip_len) // stride + 1
  s = np.stack([x[:, j * stride:j * stride + clip_len].mean(1) for j in range(k)], 1)
  return {'score': s, 'logits': np.stack([s, -s], -1)}


def _rows(source, config, clip_len, stride):
  chunks = []
  for b in pipeline.eval_batches(config, source, ('features',), 4):
    out = _predict(b, clip_len, stride)
    chunks.append({**{k: v for k, v in b.items() if k != 'features'},
                   **{'out/' + k: v for k, v in out.items()}})
  rows = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
  keep = rows['index'] >= 0
  rows = {k: v[keep] for k, v in rows.items()}
  order = np.argsort(rows['index'], kind='stable')
  return {k: v[order] for k, v in rows.items()}


@pytest.mark.parametrize('clip_len,stride,window,snippet', [(8, 4, 24, 1), (8, 8, 16, 1),
                                                           (4, 1, 9, 16), (8, 2, 8, 1)])
def test_windowed_scores_equal_whole(clip_len, stride, window, snippet):
  lengths = [8, 9, 15, 16, 17, 23, 24, 25, 40, 57, 100]
  source = _Sequences(lengths, snippet)
  cfg = lambda w: ml_collections.ConfigDict(dict(data=dict(
      clip_len=clip_len, eval_stride=stride, eval_window=w, worker_threads=1)))
  whole = scoring.from_rows(_rows(source, cfg(0), clip_len, stride), clip_len, stride, snippet)
  win_rows = _rows(source, cfg(window), clip_len, stride)
  assert len(win_rows['index']) > len(lengths)          # long videos did get several windows
  windowed = scoring.from_rows(win_rows, clip_len, stride, snippet)
  np.testing.assert_array_equal(windowed.num_clips, whole.num_clips)
  np.testing.assert_array_equal(windowed.offsets, whole.offsets)
  np.testing.assert_array_equal(windowed.frame_labels, whole.frame_labels)
  np.testing.assert_allclose(windowed.frame_scores, whole.frame_scores, rtol=1e-6)
  np.testing.assert_allclose(windowed.clip_scores, whole.clip_scores, rtol=1e-6)
  # and against clips computed directly on each whole sequence
  for v, n in enumerate(lengths):
    x = source[v]['features'][:, 0]
    k = (n - clip_len) // stride + 1
    direct = [x[j * stride:j * stride + clip_len].mean() for j in range(k)]
    np.testing.assert_allclose(whole.clip_scores[v, :k], direct, rtol=1e-6)


def test_window_must_continue_the_clip_grid():
  cfg = ml_collections.ConfigDict(dict(data=dict(clip_len=8, eval_stride=4, eval_window=22)))
  with pytest.raises(ValueError, match='eval_window=22'):
    pipeline.check_window(cfg)
