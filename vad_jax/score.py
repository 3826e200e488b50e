"""Scores your videos with a trained video anomaly detector or frame classifier.

Runs it takes: a video anomaly detector (configs/hybrid.py, configs/svdd_vae.py) or a frame
classifier with a normal class (configs/multihead.py).

  python -m vad_jax.score --workdir=RUN VIDEO [VIDEO ...] [--out=DIR] [--threshold=T]

Each video (any file PyAV opens: MP4, AVI, ...) is decoded at the run's frame rate
(`data.fps`; every frame when the run has none) and size and scored by the run's best
checkpoint with its test-time views (`eval_tta`). A video anomaly detector: the video is cut
into windows of `--window` frames that continue one grid of clip starts (as `data.eval_window`
evaluation does: the windows share clip_len - eval_stride frames); a frame's score is the mean
over the clips containing it, its class the argmax of the clips' mean class probabilities. A
frame classifier: every frame is scored on its own (batches of `--window` frames, default
`eval_batch_size`), score 1 - p(Normal) (its evaluator's anomaly score), class the argmax of
its class probabilities. Per video, in --out (default RUN/scores/<video name>/, or
./scores/<video name>/ for a run in a bucket):
  scores.csv     frame (source frame index), time (s), score, top class and its probability
  scores.png     the score over time, the alert threshold, the alert segments shaded
  alerts.json    alert segments: score >= threshold starts one, it ends when the score falls
                 below threshold - hysteresis; segments shorter than --min_alert_seconds are
                 dropped; each with start / end frame and time, peak and mean score, top class
  annotated.mp4  the source video with a score bar, the top class, a red frame while alerting
The threshold is the run's own (`alert_threshold.json`: chosen on the validation split at a
stated false-alarm rate of normal frames, written with the best checkpoint) unless
--threshold overrides it. Inputs computed per window (the `foreground` / `motion` trunk inputs
subtract the window's median frame) see one window at a time. Every file is written under a
temporary name and renamed at the end. Other runs are refused with the reason: a detector
(configs/detector.py: `python -m vad_jax.detect`), the violence classifier (configs/violence.py:
one label per whole video from sampled feature vectors, no per-frame score), feature-input runs.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time

import numpy as np

from vad_jax import storage

__all__ = ['Scorer', 'alert_segments', 'score_video']


def alert_segments(scores: np.ndarray, threshold: float, hysteresis: float = 0.05,
                   min_frames: int = 1) -> list[tuple[int, int]]:
  """[(start, end)) frame ranges of alerts: on at score >= threshold, off once the score falls
  below threshold - hysteresis; ranges shorter than `min_frames` dropped."""
  out, start = [], None
  for i, s in enumerate(np.asarray(scores, np.float64)):
    if start is None and s >= threshold:
      start = i
    elif start is not None and s < threshold - hysteresis:
      out.append((start, i))
      start = None
  if start is not None:
    out.append((start, len(scores)))
  return [(a, b) for a, b in out if b - a >= min_frames]


def _refusal(run, workdir: str, field: str) -> str | None:
  """Why `score` cannot use `run` (one line), or None when it can."""
  system, task = run.config.system, run.system.task
  if task == 'anomaly' and field == 'video':
    return None
  if task == 'classification' and field == 'image':
    if run.config.evals.get('classification', {}).get('normal_class') is not None:
      return None
    return (f'{workdir}: the frame classifier {system!r} names no normal class '
            '(evals.classification.normal_class): no anomaly score 1 - p(normal) to score')
  if task == 'detection':
    return (f'{workdir}: a detector run ({system!r}) predicts boxes, not anomaly scores; run '
            f'`python -m vad_jax.detect --workdir={workdir} VIDEO` on it')
  if system == 'violence':
    return (f'{workdir}: the violence classifier (configs/violence.py) gives one label per whole '
            'video, from clips of feature vectors sampled across it, so no per-frame score or '
            'alert threshold is defined; `score` takes a hybrid / svdd_vae (clips) or multihead '
            '(frames) run')
  return (f'{workdir}: system {system!r} scores {field!r} inputs (task {task!r}), not video '
          'frames; `score` takes a hybrid / svdd_vae (clips) or multihead (frames) run')


class Scorer:
  """A trained run as frames -> (frame scores [N], class probabilities [N, C]), with the run's
  test-time views (`eval_tta`) as its evaluation had: a video anomaly detector (configs/hybrid.py,
  configs/svdd_vae.py) scores clips and a frame averages the clips containing it; a frame
  classifier with a normal class (configs/multihead.py; `per_frame`) scores every frame on its
  own, 1 - p(normal), in batches of `window` frames (a per-frame run has clip_len = stride = 1)."""

  def __init__(self, workdir: str, window: int | None = None):
    import jax
    from vad_jax.evaluate import tta
    from vad_jax.train import trained
    run = trained.load(workdir)
    field = run.system.predict_fields[0]
    why = _refusal(run, workdir, field)
    if why:
      raise ValueError(why)
    d = run.config.data
    self.run, self.workdir = run, workdir
    self.per_frame = field == 'image'
    self.height, self.width = run.info.element_spec[field].shape[-3:-1]
    self.fps = float(d.get('fps', 0) or 0) or None
    self.class_names = tuple(run.info.class_names)
    variables = jax.device_put(run.variables)
    predict = tta.with_views(run.system.predict, tta.parse(run.config.get('eval_tta', '')),
                             field=field)          # the views the run was evaluated with
    if self.per_frame:
      self.normal = int(run.config.evals.classification.normal_class)
      self.clip_len = self.stride = 1
      self.window = int(window or run.config.get('eval_batch_size', 0) or 0) or 64

      def frames(x):
        probs = jax.nn.softmax(predict(variables, {'image': x})['logits'], -1)
        return 1.0 - probs[:, self.normal], probs
      self.predict_frames = jax.jit(frames)   # uint8 [B, H, W, 3] -> (scores [B], probs [B, C])
    else:
      self.clip_len, self.stride = int(d.clip_len), int(d.eval_stride)
      w = int(window or d.get('eval_window', 0) or 0) or 128
      self.window = self.clip_len + max(1, -(-(w - self.clip_len) // self.stride)) * self.stride
      self._predict = jax.jit(lambda x: predict(variables, {'video': x}))
    from vad_jax.evaluate import alert
    self.threshold_info = alert.read(workdir)

  def __call__(self, frames: np.ndarray, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """frames uint8 [N, H, W, 3] at the run's size -> (scores [N], probs [N, C])."""
    if self.per_frame:
      return self._score_frames(frames, progress)
    return self._score_clips(frames, progress)

  def _score_frames(self, frames, progress):
    scores, probs = [], []
    for a in range(0, len(frames), self.window):
      x = frames[a:a + self.window]
      k = len(x)
      x = np.concatenate([x, np.repeat(x[-1:], self.window - k, 0)])   # one compiled shape
      s, p = self.predict_frames(x)
      scores.append(np.asarray(s[:k]))
      probs.append(np.asarray(p[:k]))
      if progress is not None:
        progress(k)
    return (np.concatenate(scores).astype(np.float32),
            np.concatenate(probs).astype(np.float32))

  def _score_clips(self, frames, progress):
    import jax
    from vad_jax.data import pipeline
    from vad_jax.evaluate import scoring
    n, t, s = len(frames), self.clip_len, self.stride
    if n < t:
      frames = np.concatenate([frames, np.repeat(frames[-1:], t - n, 0)])
    clips, logits = [], []
    for _, a, b in pipeline.eval_windows([len(frames)], self.window, t - s):
      x = frames[a:b]
      k = max((len(x) - t) // s + 1, 0)
      if not k:
        continue
      x = np.concatenate([x, np.repeat(x[-1:], self.window - len(x), 0)])[None]
      out = self._predict(x)
      clips.append(np.asarray(out['score'][0, :k]))
      logits.append(np.asarray(out['logits'][0, :k]))
      if progress is not None:
        progress(b - a)
    clip_scores = np.concatenate(clips)
    probs = np.asarray(jax.nn.softmax(np.concatenate(logits), -1))
    frame = scoring.frame_scores(clip_scores, n, t, s)
    frame_probs = np.stack([scoring.frame_scores(probs[:, c], n, t, s)
                            for c in range(probs.shape[1])], 1)
    return frame.astype(np.float32), frame_probs.astype(np.float32)


def _plot(path, times, scores, threshold, segments, title):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(10, 3))
  ax.plot(times, scores, lw=1.2, label='anomaly score')
  if threshold is not None:
    ax.axhline(threshold, color='r', ls='--', lw=1, label=f'alert threshold {threshold:.3f}')
  for a, b in segments:
    ax.axvspan(times[a], times[min(b, len(times) - 1)], color='r', alpha=0.15)
  ax.set(xlabel='time (s)', ylabel='score', ylim=(0, 1), title=title)
  ax.legend(loc='upper right', fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _annotate(frame, score, threshold, label, alerting):
  from PIL import Image, ImageDraw
  h, w = frame.shape[:2]
  im = Image.fromarray(frame)
  d = ImageDraw.Draw(im)
  bar = max(6, h // 24)
  d.rectangle((0, h - bar, w, h), fill=(30, 30, 30))
  d.rectangle((0, h - bar, int(w * float(np.clip(score, 0, 1))), h),
              fill=(230, 40, 40) if alerting else (60, 200, 90))
  if threshold is not None:
    x = int(w * threshold)
    d.line((x, h - bar - 2, x, h), fill=(255, 255, 255), width=1)
  d.text((4, h - bar - 12), f'{score:.2f} {label}', fill=(255, 255, 255))
  if alerting:
    d.rectangle((0, 0, w - 1, h - 1), outline=(230, 40, 40), width=max(2, h // 60))
  return np.asarray(im)


def _write_reports(tmp, path, frame, times, scores, probs, names, threshold, source, fps,
                   hysteresis, min_alert_seconds, title):
  """Writes scores.csv, alerts.json and scores.png (under the names `tmp(name)`) for frames
  `frame` [N] (source frame indices) at `times` [N]: scores [N] and class probabilities [N, C]
  (NaN where a streamed frame has no clip yet). -> the alert segments [(start, end))."""
  scored = ~np.isnan(scores)
  top = np.where(scored, np.nan_to_num(probs).argmax(1), -1)
  segments = (alert_segments(np.where(scored, scores, -np.inf), threshold, hysteresis,
                             max(1, round(min_alert_seconds * fps)))
              if threshold is not None else [])
  with open(tmp('scores.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['frame', 'time', 'score', 'top_class', 'top_prob'])
    for j in range(len(scores)):
      ok = bool(scored[j])
      w.writerow([int(frame[j]), f'{times[j]:.3f}', f'{scores[j]:.5f}' if ok else '',
                  names[top[j]] if ok else '', f'{probs[j, top[j]]:.4f}' if ok else ''])
  alerts = []
  for a, b in segments:
    mean_probs = np.nanmean(probs[a:b], 0)
    c = int(mean_probs.argmax())
    alerts.append({'start_frame': int(frame[a]), 'end_frame': int(frame[b - 1]),
                   'start_time': round(float(times[a]), 3),
                   'end_time': round(float(times[b - 1]), 3),
                   'peak_score': round(float(np.nanmax(scores[a:b])), 5),
                   'mean_score': round(float(np.nanmean(scores[a:b])), 5),
                   'top_class': names[c], 'top_class_prob': round(float(mean_probs[c]), 4)})
  with open(tmp('alerts.json'), 'w') as f:
    json.dump({'video': path, 'threshold': threshold, 'threshold_source': source,
               'hysteresis': hysteresis, 'min_alert_seconds': min_alert_seconds,
               'alerts': alerts}, f, indent=2)
  _plot(tmp('scores.png'), times, np.nan_to_num(scores), threshold, segments, title)
  return segments


def _threshold(scorer, threshold):
  """(threshold, where it comes from): --threshold, else the run's alert_threshold.json."""
  if threshold is not None:
    return threshold, '--threshold'
  info = scorer.threshold_info or {}
  return info.get('threshold'), info.get('definition', 'none: no alert_threshold.json')


def score_video(scorer: Scorer, path: str, out_dir: str, threshold: float | None = None,
                hysteresis: float = 0.05, min_alert_seconds: float = 0.5,
                annotate: bool = True) -> dict:
  """Scores one video into `out_dir` (module docstring) -> summary dict."""
  from tqdm import tqdm
  from vad_jax.data import video
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such video')
  t0 = time.perf_counter()
  frames, src_fps, n_src = video.decode(path, scorer.fps, (scorer.height, scorer.width))
  source_index = video.resample_indices(n_src, src_fps, scorer.fps)[:len(frames)]
  fps = scorer.fps or src_fps
  with tqdm(total=len(frames), unit='frame', desc=f'scoring {os.path.basename(path)}') as bar:
    scores, probs = scorer(frames, bar.update)
  thr, thr_source = _threshold(scorer, threshold)
  names = scorer.class_names
  top = probs.argmax(1)
  times = source_index / src_fps
  os.makedirs(out_dir, exist_ok=True)
  tmp = lambda f: os.path.join(out_dir, f'.tmp-{os.getpid()}-{f}')
  written = []
  try:
    segments = _write_reports(tmp, os.path.abspath(path), source_index, times, scores, probs,
                              names, thr, thr_source, fps, hysteresis, min_alert_seconds,
                              os.path.basename(path))
    written += ['scores.csv', 'alerts.json', 'scores.png']
    if annotate:
      alerting = np.zeros(len(scores), bool)
      for a, b in segments:
        alerting[a:b] = True
      with video.VideoWriter(tmp('annotated.mp4'), src_fps) as out, \
          tqdm(total=n_src, unit='frame', desc='annotating') as bar:
        for n, (frame, _) in enumerate(video.iter_frames(path)):
          j = int(np.clip(np.searchsorted(source_index, n, 'right') - 1, 0, len(scores) - 1))
          h, w_ = frame.shape[:2]
          out.write(_annotate(frame[:h - h % 2, :w_ - w_ % 2], float(scores[j]), thr,
                              f'{names[top[j]]} {probs[j, top[j]]:.2f}', bool(alerting[j])))
          bar.update()
      written.append('annotated.mp4')
  except BaseException:
    for f in ('scores.csv', 'alerts.json', 'scores.png', 'annotated.mp4'):
      if os.path.exists(tmp(f)):
        os.remove(tmp(f))
    raise
  for f in written:
    os.replace(tmp(f), os.path.join(out_dir, f))
  return {'video': path, 'frames': int(len(scores)), 'alerts': len(segments), 'threshold': thr,
          'out': out_dir, 'seconds': time.perf_counter() - t0}


def stream_video(scorer: Scorer, path: str, out_dir: str, threshold: float | None = None,
                 hysteresis: float = 0.05, min_alert_seconds: float = 0.5,
                 realtime: bool = False, background_step: float = 8.0) -> dict:
  """Scores `path` (a file, or a camera / RTSP URL PyAV opens) causally, frame by frame
  (vad_jax.stream), writing the same files as `score_video` (the annotated MP4 as frames come;
  the rest at the end). realtime: a file is read at its own frame rate (as a camera delivers)."""
  from PIL import Image
  from vad_jax.data import video
  from vad_jax.stream import StreamScorer
  stream = StreamScorer(scorer, background_step)
  thr, thr_source = _threshold(scorer, threshold)
  names = scorer.class_names
  os.makedirs(out_dir, exist_ok=True)
  tmp = lambda f: os.path.join(out_dir, f'.tmp-{os.getpid()}-{f}')
  writer = None
  times, scores, probs, on, t_first = [], [], [], False, None
  t0 = time.perf_counter()
  try:
    src_fps = video.video_fps(path)
    writer = video.VideoWriter(tmp('annotated.mp4'), src_fps)
    for n, (frame, t) in enumerate(video.iter_frames(path)):
      if realtime:
        t_first = t_first or time.perf_counter() - t
        time.sleep(max(0.0, t_first + t - time.perf_counter()))
      small = np.asarray(Image.fromarray(frame).resize((scorer.width, scorer.height),
                                                       Image.BILINEAR))
      out = stream.push(small)
      score = None if out is None else out[0]
      cls = '' if out is None else names[int(out[1].argmax())]
      prob = None if out is None else float(out[1].max())
      if score is not None and thr is not None:      # causal hysteresis: decided at frame n
        on = score >= thr if not on else score >= thr - hysteresis
      times.append(t)
      scores.append(np.nan if score is None else score)
      probs.append(np.full(len(names), np.nan) if out is None else out[1])
      h, w = frame.shape[:2]
      writer.write(_annotate(frame[:h - h % 2, :w - w % 2], 0.0 if score is None else score,
                             thr, f'{cls} {prob:.2f}' if out is not None else 'warming up', on))
    writer.close()
    if not scores:
      raise ValueError(f'{path}: no frames')
    scores, times = np.asarray(scores, np.float64), np.asarray(times)
    segments = _write_reports(tmp, path, np.arange(len(scores)), times, scores,
                              np.stack(probs), names, thr, thr_source + ' (streamed, causal)',
                              src_fps, hysteresis, min_alert_seconds,
                              f'{os.path.basename(path)} (streaming)')
  except BaseException:
    if writer is not None:
      writer.abort()
    for f in ('scores.csv', 'alerts.json', 'scores.png'):
      if os.path.exists(tmp(f)):
        os.remove(tmp(f))
    raise
  for f in ('scores.csv', 'alerts.json', 'scores.png', 'annotated.mp4'):
    os.replace(tmp(f), os.path.join(out_dir, f))
  seconds = time.perf_counter() - t0
  lat = np.asarray(stream.latencies)
  return {'video': path, 'frames': len(scores), 'alerts': len(segments), 'threshold': thr,
          'out': out_dir, 'seconds': seconds,
          'latency_ms_median': float(np.median(lat) * 1e3) if len(lat) else None,
          'latency_ms_p95': float(np.percentile(lat, 95) * 1e3) if len(lat) else None}


def main(argv=None) -> int:
  from vad_jax.host_memory import keep_freed_memory
  keep_freed_memory()              # XLA:CPU reuses its buffers (vad_jax/host_memory.py)
  import argparse
  p = argparse.ArgumentParser(prog='python -m vad_jax.score', description=__doc__.split('\n')[0])
  p.add_argument('--workdir', required=True,
                 help='a trained hybrid / svdd_vae / multihead run')
  p.add_argument('videos', nargs='+')
  p.add_argument('--out', default=None, help='output folder (default RUN/scores/<video name>; '
                                               'with several videos, one folder each inside)')
  p.add_argument('--threshold', type=float, default=None,
                 help="alert threshold (default: the run's alert_threshold.json)")
  p.add_argument('--hysteresis', type=float, default=0.05)
  p.add_argument('--min_alert_seconds', type=float, default=0.5)
  p.add_argument('--window', type=int, default=None,
                 help='frames scored at once (a window of clips; a frame classifier: a batch)')
  p.add_argument('--no_annotate', action='store_true')
  p.add_argument('--stream', action='store_true',
                 help='causal frame-by-frame scoring (a file, or a camera / RTSP URL)')
  p.add_argument('--realtime', action='store_true', help='--stream: read a file at its fps')
  args = p.parse_args(argv)
  try:
    scorer = Scorer(args.workdir, args.window)
    for path in args.videos:
      name = os.path.splitext(os.path.basename(path))[0]
      # A run in a bucket (gs://): outputs default to ./scores here (the video and the
      # annotated MP4 are local files).
      base = args.out or ('scores' if storage.is_remote(args.workdir)
                          else os.path.join(args.workdir, 'scores'))
      out = args.out if (args.out and len(args.videos) == 1) else os.path.join(base, name)
      if args.stream:
        res = stream_video(scorer, path, out, args.threshold, args.hysteresis,
                           args.min_alert_seconds, args.realtime)
      else:
        res = score_video(scorer, path, out, args.threshold, args.hysteresis,
                          args.min_alert_seconds, not args.no_annotate)
      thr = 'none' if res['threshold'] is None else f"{res['threshold']:.4f}"
      print(f"{path}: {res['frames']} frames, {res['alerts']} alert(s) at threshold {thr}, "
            f"{res['frames'] / res['seconds']:.1f} frames/s"
            + (f", latency median {res['latency_ms_median']:.1f} ms / p95 "
               f"{res['latency_ms_p95']:.1f} ms" if res.get('latency_ms_median') else '')
            + f"; outputs in {res['out']}")
  except (FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
