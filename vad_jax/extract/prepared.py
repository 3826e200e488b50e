"""Features of a prepared dataset (`python -m vad_jax.prepare`), in the layouts feature-based
tools read: `python -m vad_jax.extract` and the 'prepared_features' data source.

  <out>/<split>/<name>.npy   float32 [T, F] (crops=1) or [T, 10, F] (crops=10, as RTFM's I3D)
  <out>/<split>.list         RTFM list: one absolute .npy path a line, anomalous videos first
                             (label != 0), then normal ones, each group in dataset order
  <out>/<split>.csv          `path,label` (class names; paths relative to <out>; dataset order):
                             what the 'features' / 'published_features' sources read
  <out>/gt-<split>.npy       uint8 [sum_v T_v * snippet]: per-frame truth of the .list's videos
                             in order (only for splits with per-frame truth)
  <out>/meta.json            extractor fingerprint, prepared spec, snippet, crops, counts

Snippets: `snippet` consecutive frames; T = floor(N / snippet) (the trailing partial snippet is
dropped, as the published I3D features do; a video shorter than one snippet gives T = 1 over
its N frames); a snippet's feature is the mean of its frames' features. snippet=1: one vector a
frame. The ground truth follows RTFM: T * snippet frames a video, mask[:T * snippet] (zeros
past a short video's end). Ten crops: the 4 corners and the centre, floor(0.875 H) x
floor(0.875 W), then their mirror images in the same order, each through the extractor (trunks
pool globally, so any size works; the descriptor describes whole frames and refuses crops).

Frame-wise trunks (keras:, run:) see fixed batches of `batch_frames` frames gathered across
videos and crops (one compiled shape; only the very last batch is padded), and videos are
decoded window by window (long untrimmed videos never sit decoded in memory); the descriptor
needs a whole video (its background is the per-pixel median over the video). Decoding runs in
a thread ahead of the extractor. Built under <out>.tmp-<pid> and renamed: <out> is complete or
absent.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import queue
import shutil
import threading
import time

import numpy as np
from absl import logging

from vad_jax.extract.synthetic import _file_digest, make_extractor

VERSION = 2          # bump when the files' content changes (1: per-video padded trunk calls)
PREFETCH = 4         # decoded windows queued ahead of the extractor


def ten_crops(video: np.ndarray) -> list[np.ndarray]:
  """uint8 [N, H, W, 3] -> 10 views [N, h, w, 3] (h = floor(0.875 H), w = floor(0.875 W)):
  top-left, top-right, bottom-left, bottom-right, centre, then their mirror images."""
  _, hh, ww, _ = video.shape
  h, w = int(0.875 * hh), int(0.875 * ww)
  tops = [(0, 0), (0, ww - w), (hh - h, 0), (hh - h, ww - w), ((hh - h) // 2, (ww - w) // 2)]
  crops = [video[:, y:y + h, x:x + w] for y, x in tops]
  return crops + [c[:, :, ::-1] for c in crops]


def snippet_means(x: np.ndarray, snippet: int) -> np.ndarray:
  """[N, ...] -> [T, ...], T = max(floor(N / snippet), 1): the mean of each snippet's rows (all
  N rows when N < snippet)."""
  if len(x) < snippet:
    return x.mean(0, keepdims=True)
  t = len(x) // snippet
  return x[:t * snippet].reshape(t, snippet, *x.shape[1:]).mean(1)


class FrameBatches:
  """Runs a frame-wise extractor (uint8 [B, n, H, W, 3] -> [B, n, F]) on fixed batches of
  `batch_frames` frames gathered across calls to `add`, so a jitted trunk compiles one shape and
  short videos are not each padded to a batch. Results come back in the order added.
  (No kept library batches a stream of variable-length arrays into fixed device batches.)"""

  def __init__(self, extractor, batch_frames: int):
    self.extractor = extractor
    self.rows = max(1, int(getattr(extractor, 'batch', 1)))
    self.cols = max(1, -(-int(batch_frames) // self.rows))
    self.size = self.rows * self.cols
    self.buf, self.fill = None, 0
    self.pending = collections.deque()     # [key, frames still owed, feature chunks]

  def add(self, key, frames: np.ndarray) -> list[tuple[object, np.ndarray]]:
    """Queues frames [n, H, W, 3] under `key`; -> the (key, float32 [n, F]) now complete."""
    self.pending.append([key, len(frames), []])
    a = 0
    while a < len(frames):
      if self.buf is None or self.buf.shape[1:] != frames.shape[1:]:
        if self.fill:
          self._run()
        self.buf = np.empty((self.size, *frames.shape[1:]), frames.dtype)
      k = min(self.size - self.fill, len(frames) - a)
      self.buf[self.fill:self.fill + k] = frames[a:a + k]
      self.fill, a = self.fill + k, a + k
      if self.fill == self.size:
        self._run()
    return self._ready()

  def flush(self) -> list[tuple[object, np.ndarray]]:
    """Runs the partial last batch (padded with its last frame); -> everything still owed."""
    if self.fill:
      self._run()
    return self._ready()

  def _run(self):
    n, x = self.fill, self.buf
    x[n:] = x[n - 1]
    feats = np.asarray(self.extractor(x.reshape(self.rows, self.cols, *x.shape[1:])),
                       np.float32).reshape(self.size, -1)[:n]
    self.fill = 0
    for entry in self.pending:
      if not len(feats):
        break
      take = min(entry[1], len(feats))
      if take:
        entry[2].append(feats[:take])
        entry[1] -= take
        feats = feats[take:]

  def _ready(self):
    done = []
    while self.pending and self.pending[0][1] == 0:
      key, _, chunks = self.pending.popleft()
      done.append((key, np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)))
    return done


def _used(n: int, snippet: int) -> int:
  """Frames of an N-frame video that its snippets cover."""
  return n if n < snippet else n // snippet * snippet


def _windows(src, whole: bool, snippet: int, window: int):
  """Yields (i, example, start, frames uint8 [n, H, W, 3]) of every video of `src`: all its
  frames (whole=True: the descriptor's background is over the whole video), or the frames its
  snippets cover in windows of `window` frames."""
  for i in range(len(src)):
    example = src[i]
    n = len(example['encoded'])
    if whole:
      yield i, example, 0, src.eval_window(example, 0, n)['video']
      continue
    used = _used(n, snippet)
    for a in range(0, used, window):
      yield i, example, a, src.eval_window(example, a, min(a + window, used))['video']


def _prefetch(gen, depth: int):
  """Runs the generator in a thread, `depth` items ahead (PIL decodes without the GIL)."""
  q, stop, end = queue.Queue(depth), threading.Event(), object()

  def work():
    try:
      for item in gen:
        while not stop.is_set():
          try:
            q.put(item, timeout=0.1)
            break
          except queue.Full:
            pass
        if stop.is_set():
          return
      q.put(end)
    except BaseException as e:            # re-raised in the consumer
      q.put(e)

  t = threading.Thread(target=work, daemon=True)
  t.start()
  try:
    while True:
      item = q.get()
      if item is end:
        return
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    stop.set()
    t.join(timeout=5)


def _extract_split(src, ex, snippet: int, crops: int, batch_frames: int, tick):
  """Yields (i, example, float32 features [T, F] or [T, crops, F]) of every video, in order;
  tick(frames) after each."""
  whole = bool(getattr(ex, 'parallel', False))
  window = snippet * max(1, batch_frames // snippet)
  batches = None if whole else FrameBatches(ex, batch_frames)
  lengths = src.lengths()
  parts = {}                                  # i -> {(start, view): snippet features}

  def finish(i, example):
    n = int(lengths[i])
    got = parts.pop(i)
    views = [np.concatenate([got[k] for k in sorted(got) if k[1] == v]) for v in range(crops)]
    tick(n)
    return i, example, views[0] if crops == 1 else np.stack(views, 1)

  def take(done):
    out = []
    for (i, a, v, example, last), feats in done:
      parts.setdefault(i, {})[(a, v)] = snippet_means(feats, snippet)
      if last:
        out.append(finish(i, example))
    return out

  for i, example, a, frames in _prefetch(_windows(src, whole, snippet, window), PREFETCH):
    last_window = a + len(frames) >= _used(int(lengths[i]), snippet)
    views = ten_crops(frames) if crops == 10 else [frames]
    if whole:
      feats = [np.asarray(ex(v[None])[0], np.float32) for v in views]
      parts[i] = {(a, v): snippet_means(f, snippet) for v, f in enumerate(feats)}
      yield finish(i, example)
      continue
    for v, view in enumerate(views):
      last = last_window and v == len(views) - 1
      yield from take(batches.add((i, a, v, example, last), view))
  if batches is not None:
    yield from take(batches.flush())


def _publish(tmp: str, out: str, overwrite: bool) -> None:
  """Renames the finished tmp folder to out (replacing it with overwrite=True)."""
  if overwrite and os.path.exists(out):
    old = f'{out}.old-{os.getpid()}'
    os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    return
  try:
    os.rename(tmp, out)                        # replaces an empty folder, never a full one
  except OSError as e:
    raise FileExistsError(f'{out} appeared while extracting (another process?): pass '
                          '--overwrite to replace it') from e


def extract(data_dir: str, spec, extractor, out: str, *, snippet: int = 16, crops: int = 1,
            splits=('train', 'validation', 'test'), batch_frames: int = 256,
            overwrite: bool = False, progress: bool = True) -> dict:
  """Writes the layout of the module docstring for the `splits` present in the prepared dataset
  `spec` under `data_dir` (an empty split, e.g. no validation carve, is skipped).

  extractor: a name for `make_extractor` ('descriptor' | 'keras:<file.h5>' | 'run:<workdir>')
  or an extractor object (fingerprint(); __call__ uint8 [B, n, H, W, 3] -> [B, n, F]; `batch`
  rows a call; `parallel=True`: whole videos, one a call). Returns meta (also <out>/meta.json).
  """
  from vad_jax.data.prepared import PreparedVideos, locate
  if crops not in (1, 10):
    raise ValueError(f'crops must be 1 or 10, got {crops}')
  if snippet < 1 or batch_frames < 1:
    raise ValueError(f'snippet and batch_frames must be >= 1, got {snippet}, {batch_frames}')
  out = os.path.abspath(os.path.expanduser(out))
  if os.path.exists(out) and not overwrite and (not os.path.isdir(out) or os.listdir(out)):
    raise FileExistsError(f'{out} exists and is not empty: choose another --out or pass '
                          '--overwrite')
  ex = make_extractor(extractor) if isinstance(extractor, str) else extractor
  if crops == 10 and getattr(ex, 'parallel', False):
    raise ValueError(f'extractor {extractor!r} describes whole frames (median background, motion '
                     'grid) and cannot see crops: use crops=1, or a trunk extractor (keras:... or '
                     'run:...) for 10 crops')
  _, index_file = locate(data_dir, spec)            # FileNotFoundError naming the prepare command
  with open(index_file) as f:
    index = json.load(f)
  tmp = f'{out}.tmp-{os.getpid()}'
  shutil.rmtree(tmp, ignore_errors=True)            # left by an earlier process with our pid
  meta = {'version': VERSION, 'extractor': ex.fingerprint(), 'prepared': spec.name,
          'spec': dataclasses.asdict(spec), 'index_digest': _file_digest(index_file),
          'snippet': snippet, 'crops': crops, 'feature_dim': None, 'splits': {}}
  t0, frames_done = time.perf_counter(), 0
  try:
    for split in splits:
      if not index['splits'].get(split, {}).get('names'):
        continue                                    # e.g. no validation carve
      src = PreparedVideos(data_dir, spec, split)
      meta['class_names'] = list(src.class_names)
      os.makedirs(os.path.join(tmp, split))
      rows, masks, snippets = [None] * len(src), [None] * len(src), 0
      bar, t_split, frames_split = None, time.perf_counter(), 0
      if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(src), unit='video', desc=f'{spec.name} {split}')

      def tick(n):
        nonlocal frames_split
        frames_split += n
        if bar is not None:
          rate = frames_split / max(time.perf_counter() - t_split, 1e-9)
          bar.set_postfix_str(f'{rate:.0f} frames/s', refresh=False)
          bar.update(1)
      try:
        for i, example, feats in _extract_split(src, ex, snippet, crops, batch_frames, tick):
          rel = os.path.join(split, f'{src.names[i]}.npy')
          np.save(os.path.join(tmp, rel), feats.astype(np.float32))
          label = int(example['label'])
          rows[i] = (rel, src.class_names[label], label)
          if 'mask' in example:
            m = np.zeros(len(feats) * snippet, np.uint8)
            k = min(len(m), len(example['mask']))
            m[:k] = example['mask'][:k]
            masks[i] = m
          meta['feature_dim'] = int(feats.shape[-1])
          snippets += len(feats)
          frames_done += len(example['encoded'])
      finally:
        if bar is not None:
          bar.close()
      order = sorted(range(len(rows)), key=lambda r: (rows[r][2] == 0, r))   # anomalous first
      with open(os.path.join(tmp, f'{split}.list'), 'w') as f:
        f.writelines(os.path.join(out, rows[r][0]) + '\n' for r in order)
      with open(os.path.join(tmp, f'{split}.csv'), 'w') as f:
        f.write('path,label\n')
        f.writelines(f'{rel},{name}\n' for rel, name, _ in rows)
      gt = all(m is not None for m in masks)
      if gt:
        np.save(os.path.join(tmp, f'gt-{split}.npy'), np.concatenate([masks[r] for r in order]))
      counts = collections.Counter(name for _, name, _ in rows)
      meta['splits'][split] = {'videos': len(rows), 'snippets': snippets, 'gt': gt,
                               'classes': {c: counts[c] for c in src.class_names if counts[c]}}
    if not meta['splits']:
      raise ValueError(f'{spec.name} in {data_dir}: none of the splits {tuple(splits)} has videos')
    meta['seconds'] = round(time.perf_counter() - t0, 2)
    with open(os.path.join(tmp, 'meta.json'), 'w') as f:
      json.dump(meta, f, indent=1)
    _publish(tmp, out, overwrite)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  logging.info('features of %s written to %s in %.1f s (%.0f frames/s)', spec.name, out,
               meta['seconds'], frames_done / max(meta['seconds'], 1e-9))
  return meta


def cache_dir(config) -> str:
  """Where 'prepared_features' caches the per-frame features the config asks for:
  <data_dir>/vad_features/<prepared name>/<hash of extractor, snippet 1, crops 1, VERSION and
  the prepared index>/."""
  from vad_jax.data.prepared import locate
  from vad_jax.data.sources import prepare_spec
  d = config.data
  if not d.data_dir:
    raise ValueError('config.data.data_dir is empty: give the --data_dir of '
                     '`python -m vad_jax.prepare`')
  spec = prepare_spec(config)
  _, index_file = locate(d.data_dir, spec)
  key = hashlib.sha256(json.dumps([make_extractor(d.extractor).fingerprint(), 1, 1, VERSION,
                                   _file_digest(index_file)]).encode()).hexdigest()[:16]
  return os.path.join(os.path.abspath(d.data_dir), 'vad_features', spec.name, key)


def source_from_config(config, split: str, request: dict):
  """The 'prepared_features' source: per-frame features (snippet 1, crops 1) of the prepared
  dataset the config names, extracted with `data.extractor` on first use and cached at
  `cache_dir(config)` (complete or absent; concurrent builders each build their own tmp and the
  first rename wins). -> FeatureSequences over <cache>/<split>.csv."""
  del request
  from vad_jax.data.features import FeatureSequences
  from vad_jax.data.prepared import PreparedVideos
  from vad_jax.data.sources import prepare_spec
  d = config.data
  out = cache_dir(config)
  spec = prepare_spec(config)
  if not os.path.exists(os.path.join(out, 'meta.json')):
    logging.info('extracting %s features of %s into %s', d.extractor, spec.name, out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    try:
      extract(d.data_dir, spec, d.extractor, out, snippet=1, crops=1, progress=False)
    except FileExistsError:
      if not os.path.exists(os.path.join(out, 'meta.json')):
        raise
      logging.info('another process extracted %s first; using it', out)
  PreparedVideos(d.data_dir, spec, split)   # a clear error when the split is empty
  return FeatureSequences(os.path.join(out, f'{split}.csv'), tuple(d.class_names), d.clip_len,
                          crops='mean')
