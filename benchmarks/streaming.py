"""Streaming throughput and latency of a video anomaly run or a frame classifier, and how a video
run's streaming scores differ from its offline ones (vad_jax.stream).

  python benchmarks/streaming.py --workdir=runs/hybrid_local [--frames=600] [--videos=200]

Throughput: frames pushed one at a time as fast as they come (decode excluded: frames from the
run's own test split, already at the run's size); latency: seconds from a frame's push to its
score, for the frames that end a clip (every `eval_stride`-th; the others cost only the running
background). Quality: the test split scored causally, frame AUC against the offline scores the
run saved (`scores_<split>.npz`: whole videos, clip-averaged frames, the median background, the
run's test-time views); frames before a video's first clip take that clip's score. Prints the
machine's own reference (a 1024x1024 float32 matmul) beside the figures.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--workdir', required=True)
  p.add_argument('--frames', type=int, default=600)
  p.add_argument('--videos', type=int, default=200, help='videos for the AUC comparison')
  p.add_argument('--split', default='test', help="'validation' to choose settings on")
  p.add_argument('--background_step', type=float, default=8.0)
  args = p.parse_args()
  from sklearn.metrics import roc_auc_score
  from vad_jax.data import sources
  from vad_jax.evaluate.scoring import SplitScores
  from vad_jax.score import Scorer
  from vad_jax.stream import StreamScorer

  a = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32)
  t0 = time.perf_counter()
  for _ in range(10):
    a @ a
  ref = (time.perf_counter() - t0) / 10

  scorer = Scorer(args.workdir)
  test = sources.make(scorer.run.config, args.split)
  if scorer.per_frame:       # a frame classifier's examples are frames
    frames = np.stack([test[i]['image'] for i in range(min(len(test), args.frames))])
  else:
    frames = np.concatenate([test[i]['video'] for i in range(
        min(len(test), 1 + args.frames // test[0]['video'].shape[0]))])[:args.frames]
  stream = StreamScorer(scorer, args.background_step)
  for f in frames[:scorer.clip_len + scorer.stride]:      # compile
    stream.push(f)
  stream.latencies.clear()
  t0 = time.perf_counter()
  for f in frames:
    stream.push(f)
  seconds = time.perf_counter() - t0
  lat = np.asarray(stream.latencies) * 1e3
  print(f'machine reference: 1024^2 float32 matmul {ref * 1e3:.1f} ms')
  print(f'streaming {len(frames)} frames at {scorer.height}x{scorer.width}: '
        f'{len(frames) / seconds:.1f} frames/s sustained; latency (push -> score, frames ending '
        f'a clip, every {scorer.stride}) median {np.median(lat):.1f} ms, p95 '
        f'{np.percentile(lat, 95):.1f} ms, max {lat.max():.1f} ms')

  if scorer.per_frame:
    print('a frame classifier streams the offline computation frame by frame (same views): its '
          'streamed scores are the offline ones (tests/test_multihead.py); no AUC to compare')
    return
  offline = SplitScores.load(os.path.join(args.workdir, f'scores_{args.split}.npz'))
  n = min(args.videos, len(offline.video_index))
  on, off, labels = [], [], []
  t0 = time.perf_counter()
  s = stream
  for v in range(n):
    s.reset()
    out = [s.push(f) for f in test[int(offline.video_index[v])]['video']]
    first = next(o[0] for o in out if o is not None)
    on.append([first if o is None else o[0] for o in out])
    o, lab = offline.video(v)
    off.append(o)
    labels.append(lab)
  on, off, labels = (np.concatenate(x) for x in (on, off, labels))
  print(f'{args.split} split (background step {args.background_step:g}), {n} videos ({time.perf_counter() - t0:.0f} s): frame AUC offline '
        f'{roc_auc_score(labels, off):.4f}, streaming {roc_auc_score(labels, on):.4f}; '
        f'mean |offline - streaming| {np.mean(np.abs(on - off)):.4f}, correlation '
        f'{np.corrcoef(on, off)[0, 1]:.3f}')


if __name__ == '__main__':
  main()
