"""Frame scores from (overlapping) clip scores, the saved score file, and clip ground truth."""

import numpy as np

from vad_jax.evaluate import report, scoring


def test_disjoint_clips_repeat_each_score_and_the_tail_takes_the_last():
  got = scoring.frame_scores(np.array([0.1, 0.7]), 10, 4)
  np.testing.assert_allclose(got, [0.1] * 4 + [0.7] * 4 + [0.7] * 2)


def test_overlapping_clips_average_over_the_clips_containing_a_frame():
  a, b, c, d = 0.1, 0.5, 0.9, 0.3      # clips at frames 0-3, 2-5, 4-7, 6-9; frame 10 uncovered
  got = scoring.frame_scores(np.array([a, b, c, d]), 11, clip_len=4, stride=2)
  expect = [a, a, (a + b) / 2, (a + b) / 2, (b + c) / 2, (b + c) / 2, (c + d) / 2, (c + d) / 2,
            d, d, d]
  np.testing.assert_allclose(got, expect, rtol=1e-12)


def _scores(clip_scores, masks, labels, clip_len, stride):
  lengths = [len(m) for m in masks]
  return scoring.SplitScores(
      video_index=np.arange(len(masks), dtype=np.int32),
      video_label=np.asarray(labels, np.int32),
      offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
      frame_scores=np.concatenate([scoring.frame_scores(c, len(m), clip_len, stride)
                                   for c, m in zip(clip_scores, masks)]),
      frame_labels=np.concatenate(masks).astype(np.uint8),
      clip_scores=np.asarray(clip_scores, np.float32),
      clip_logits=np.zeros((len(masks), len(clip_scores[0]), 14), np.float32),
      clip_len=clip_len, clip_stride=stride)


def test_clip_truth_uses_the_clip_frames_of_the_stride(tmp_path):
  mask = np.zeros(12, np.uint8)
  mask[5:9] = 1                         # clips (T=4, S=2): 0-3, 2-5, 4-7, 6-9, 8-11
  s = _scores([np.zeros(5), np.zeros(5)], [mask, np.zeros(12, np.uint8)], [6, 0], 4, 2)
  np.testing.assert_array_equal(report.clip_truth(s), [[0, 0, 6, 6, 0], [0, 0, 0, 0, 0]])
  path = str(tmp_path / 'scores.npz')
  s.save(path)
  back = scoring.SplitScores.load(path)
  assert (back.clip_len, back.clip_stride) == (4, 2) and isinstance(back.clip_stride, int)
  np.testing.assert_array_equal(back.frame_labels, s.frame_labels)
