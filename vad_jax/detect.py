"""Runs a trained detector (configs/detector.py) on an image folder, an image or a video.

  python -m vad_jax.detect --workdir=RUN INPUT [--out=DIR] [--threshold=T] [--batch=N]

INPUT: a folder (its .jpg / .jpeg / .png / .bmp files, recursively, in sorted order), one image,
or a video PyAV can open (.mp4, .avi, .mov, .mkv, ...). Each image / frame is resized to the
run's input size (as in training), scored by the run's best checkpoint with its jitted predict
(grid decoding + NMS), and boxes with score >= threshold (default: the run's
`evals.detection.score_threshold`) are written, in the ORIGINAL image's pixels, to --out
(default RUN/detect/<input name>/):
  detections.jsonl   one JSON object a detection: source, frame, time, score, x0, y0, x1, y1
                     (pixels), and the normalised box
  detections.csv     the same rows as CSV
  annotated/<name>.png (images)  or  annotated.mp4 (videos): the boxes drawn with their scores
Everything is written under temporary names and renamed at the end: an interrupted run leaves
no half-written file.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time

import numpy as np

from vad_jax import storage

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp')
FIELDS = ('source', 'frame', 'time', 'score', 'x0', 'y0', 'x1', 'y1', 'nx0', 'ny0', 'nx1', 'ny1')


def list_images(folder: str) -> list[str]:
  out = []
  for d, _, files in os.walk(folder):
    out += [os.path.join(d, f) for f in files if f.lower().endswith(IMAGE_EXTS)]
  return sorted(out)


def _inputs(path: str):
  """-> (kind 'images' | 'video', iterator of (source name, frame, time, uint8 [H, W, 3]), count
  or None)."""
  from vad_jax.data import video
  if os.path.isdir(path):
    files = list_images(path)
    if not files:
      raise FileNotFoundError(f'{path}: no {"/".join(IMAGE_EXTS)} images in this folder')
    it = ((os.path.relpath(f, path), 0, 0.0, video.read_frame_image(f)) for f in files)
    return 'images', it, len(files)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path}: no such file or folder')
  if path.lower().endswith(IMAGE_EXTS):
    return 'images', iter([(os.path.basename(path), 0, 0.0, video.read_frame_image(path))]), 1
  name = os.path.basename(path)
  it = ((name, n, t, f) for n, (f, t) in enumerate(video.iter_frames(path)))
  return 'video', it, None


def draw(image: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
  """uint8 [H, W, 3] with `boxes` [K, 4] (pixels) drawn in red, each with its score."""
  from PIL import Image, ImageDraw
  im = Image.fromarray(image)
  d = ImageDraw.Draw(im)
  width = max(1, round(min(image.shape[:2]) / 200))
  for (x0, y0, x1, y1), s in zip(boxes, scores):
    d.rectangle((x0, y0, x1, y1), outline=(255, 40, 40), width=width)
    d.text((x0 + 2, max(0, y0 - 11)), f'{s:.2f}', fill=(255, 40, 40))
  return np.asarray(im)


class Detector:
  """A trained run's predict as a function of full-size images -> per-image detections."""

  def __init__(self, workdir: str, batch: int = 16):
    import jax
    from vad_jax.train import trained
    run = trained.load(workdir)
    if run.system.task != 'detection':
      raise ValueError(f'{workdir}: system {run.config.system!r} is not a detector '
                       f"(task {run.system.task!r}); train configs/detector.py")
    self.run, self.batch = run, batch
    self.height, self.width = run.info.element_spec['image'].shape[:2]
    variables = jax.device_put(run.variables)
    predict = jax.jit(lambda images: run.system.predict(variables, {'image': images}))
    self.predict = predict
    self.threshold = float(run.config.evals.get('detection', {}).get('score_threshold', 0.5))

  def resize(self, image: np.ndarray) -> np.ndarray:
    from PIL import Image
    if image.shape[:2] == (self.height, self.width):
      return image
    return np.asarray(Image.fromarray(image).resize((self.width, self.height), Image.BILINEAR))

  def __call__(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Full-size uint8 images -> [(normalised boxes [k, 4], scores [k])] (all valid detections,
    by decreasing score; the batch is padded to `batch` so one compiled shape serves all)."""
    x = np.stack([self.resize(im) for im in images])
    n = len(x)
    if n < self.batch:
      x = np.concatenate([x, np.repeat(x[-1:], self.batch - n, 0)])
    out = {k: np.asarray(v) for k, v in self.predict(x).items()}
    return [(out['boxes'][i][out['valid'][i]], out['scores'][i][out['valid'][i]])
            for i in range(n)]


def detect(workdir: str, path: str, out_dir: str | None = None, threshold: float | None = None,
           batch: int = 16, annotate: bool = True) -> dict:
  """Runs the detector of `workdir` on `path` (module docstring) -> summary dict."""
  from tqdm import tqdm
  from vad_jax.data import video
  detector = Detector(workdir, batch)
  thr = detector.threshold if threshold is None else float(threshold)
  kind, items, total = _inputs(path)
  name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
  run_dir = 'detect' if storage.is_remote(workdir) else os.path.join(workdir, 'detect')
  out_dir = os.path.abspath(out_dir or os.path.join(run_dir, name))   # a bucket run: ./detect
  os.makedirs(out_dir, exist_ok=True)
  tmp = lambda f: os.path.join(out_dir, f'.tmp-{os.getpid()}-{f}')
  rows, written = [], []
  writer = None
  if kind == 'video' and annotate:
    writer = video.VideoWriter(tmp('annotated.mp4'), video.video_fps(path))
  ann_dir = os.path.join(out_dir, 'annotated')
  t0, frames = time.perf_counter(), 0
  try:
    with tqdm(total=total, unit='frame' if kind == 'video' else 'image',
              desc=f'detecting in {os.path.basename(os.path.normpath(path))}') as bar:
      chunk = []

      def flush():
        nonlocal frames
        for (src, n, t, image), (boxes, scores) in zip(chunk, detector([c[3] for c in chunk])):
          keep = scores >= thr
          boxes, scores = boxes[keep], scores[keep]
          h, w = image.shape[:2]
          px = boxes * np.array([w, h, w, h], np.float32)
          for b, nb, s in zip(px, boxes, scores):
            rows.append(dict(zip(FIELDS, [src, n, round(t, 4), round(float(s), 5),
                                          *(round(float(v), 2) for v in b),
                                          *(round(float(v), 5) for v in nb)])))
          if annotate:
            drawn = draw(image, px, scores)
            if writer is not None:
              writer.write(drawn[:h - h % 2, :w - w % 2])
            else:
              from PIL import Image
              target = os.path.join(ann_dir, os.path.splitext(src)[0] + '.png')
              os.makedirs(os.path.dirname(target), exist_ok=True)
              Image.fromarray(drawn).save(target + '.tmp.png')
              written.append(target)
          frames += 1
          bar.update()
        bar.set_postfix(detections=len(rows))
        chunk.clear()

      for item in items:
        chunk.append(item)
        if len(chunk) == batch:
          flush()
      if chunk:
        flush()
    with open(tmp('detections.jsonl'), 'w') as f:
      for r in rows:
        f.write(json.dumps(r) + '\n')
    with open(tmp('detections.csv'), 'w', newline='') as f:
      w = csv.DictWriter(f, FIELDS)
      w.writeheader()
      w.writerows(rows)
    if writer is not None:
      writer.close()
  except BaseException:
    if writer is not None:
      writer.abort()
    for f in ('detections.jsonl', 'detections.csv'):
      if os.path.exists(tmp(f)):
        os.remove(tmp(f))
    for target in written:
      if os.path.exists(target + '.tmp.png'):
        os.remove(target + '.tmp.png')
    raise
  for f in ('detections.jsonl', 'detections.csv') + (('annotated.mp4',) if writer else ()):
    os.replace(tmp(f), os.path.join(out_dir, f))
  for target in written:
    os.replace(target + '.tmp.png', target)
  seconds = time.perf_counter() - t0
  return {'input': path, 'kind': kind, 'frames': frames, 'detections': len(rows),
          'threshold': thr, 'out': out_dir, 'seconds': seconds,
          'checkpoint_step': detector.run.step}


def main(argv=None) -> int:
  from vad_jax.host_memory import keep_freed_memory
  keep_freed_memory()              # XLA:CPU reuses its buffers (vad_jax/host_memory.py)
  import argparse
  p = argparse.ArgumentParser(prog='python -m vad_jax.detect', description=__doc__.split('\n')[0])
  p.add_argument('--workdir', required=True, help='a trained configs/detector.py run')
  p.add_argument('input', help='an image folder, an image, or a video')
  p.add_argument('--out', default=None, help='output folder (default RUN/detect/<input name>)')
  p.add_argument('--threshold', type=float, default=None,
                 help="score threshold (default: the run's evals.detection.score_threshold)")
  p.add_argument('--batch', type=int, default=16, help='images a prediction step')
  p.add_argument('--no_annotate', action='store_true', help='write boxes only, no pictures')
  args = p.parse_args(argv)
  try:
    res = detect(args.workdir, args.input, args.out, args.threshold, args.batch,
                 not args.no_annotate)
  except (FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f"{res['detections']} detections (score >= {res['threshold']:g}) in {res['frames']} "
        f"{'frames' if res['kind'] == 'video' else 'images'}, {res['frames'] / res['seconds']:.1f}"
        f"/s; checkpoint {res['checkpoint_step']}; outputs in {res['out']}")
  return 0


if __name__ == '__main__':
  sys.exit(main())
