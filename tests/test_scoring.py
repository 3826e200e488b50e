"""Frame scores from (overlapping) clip scores, the saved score file, and clip ground truth."""

import numpy as np

from vad_jax.evaluate import frame_anomaly, scoring


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
      num_clips=np.array([len(c) for c in clip_scores]),
      clip_len=clip_len, clip_stride=stride)


def test_clip_truth_uses_the_clip_frames_of_the_stride(tmp_path):
  mask = np.zeros(12, np.uint8)
  mask[5:9] = 1                         # clips (T=4, S=2): 0-3, 2-5, 4-7, 6-9, 8-11
  s = _scores([np.zeros(5), np.zeros(5)], [mask, np.zeros(12, np.uint8)], [6, 0], 4, 2)
  np.testing.assert_array_equal(frame_anomaly.clip_truth(s), [[0, 0, 6, 6, 0], [0, 0, 0, 0, 0]])
  path = str(tmp_path / 'scores.npz')
  s.save(path)
  back = scoring.SplitScores.load(path)
  assert (back.clip_len, back.clip_stride) == (4, 2) and isinstance(back.clip_stride, int)
  np.testing.assert_array_equal(back.frame_labels, s.frame_labels)


def test_videos_of_different_lengths_keep_only_their_own_clips():
  # Two videos padded to 12 frames: lengths 12 and 8; clips T=4 every S=2 -> 5 and 3 clips.
  t, s = 4, 2
  score = np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [0.6, 0.7, 0.8, 0.99, 0.99]], np.float32)
  logits = np.zeros((2, 5, 3), np.float32)
  logits[1, :3, 2] = 5.0                           # video 1 predicts class 2 on its real clips
  logits[1, 3:, 1] = 9.0                           # padding clips say class 1: must be ignored
  mask = np.zeros((2, 12), np.uint8)
  mask[1, 4:8] = 1
  mask[1, 8:] = 1                                  # the padding's mask must be dropped too
  rows = {'index': np.array([0, 1], np.int32), 'label': np.array([0, 2], np.int32),
          'length': np.array([12, 8], np.int32), 'mask': mask,
          'out/score': score, 'out/logits': logits}
  sc = scoring.from_rows(rows, t, s)
  np.testing.assert_array_equal(sc.num_clips, [5, 3])
  np.testing.assert_array_equal(sc.offsets, [0, 12, 20])
  np.testing.assert_allclose(sc.video(1)[0], scoring.frame_scores(score[1, :3], 8, t, s))
  np.testing.assert_array_equal(sc.video(1)[1], [0, 0, 0, 0, 1, 1, 1, 1])
  assert np.isnan(sc.clip_scores[1, 3:]).all()
  truth = frame_anomaly.clip_truth(sc)
  np.testing.assert_array_equal(truth[1], [0, 2, 2, -1, -1])    # clips 0-3, 2-5, 4-7
  out = frame_anomaly.summarize(sc, ('Normal', 'A', 'B'))
  cm = np.array(out['clip_confusion_matrix'])
  assert cm.sum() == 8 and cm[:, 1].sum() == 0                 # 5 + 3 clips; padding never counted
