"""Features of a prepared dataset (`python -m vad_jax.prepare`), in the layouts feature-based
tools read: `python -m vad_jax.extract` and the 'prepared_features' data source.

  <out>/<split>/<name>.npy   float32 [T, F] (crops=1) or [T, 10, F] (crops=10, as RTFM's I3D)
  <out>/<split>.list         RTFM list: one absolute .npy path a line, anomalous videos first
  <out>/<split>.csv          `path,label` (class names; paths relative to <out>): VadCLIP-style,
                             and what the 'features' / 'published_features' sources read
  <out>/gt-<split>.npy       uint8 [sum_v T_v * snippet]: per-frame truth of the .list's videos
                             in order (only for splits with per-frame truth)
  <out>/meta.json            extractor fingerprint, prepared spec, snippet, crops, counts

Snippets: `snippet` consecutive frames; T = floor(N / snippet) (the trailing partial snippet is
dropped, as the published I3D features do; a video shorter than one snippet gives T = 1 over
its frames); a snippet's feature is the mean of its frames' features. snippet=1: one vector a
frame. The ground truth follows RTFM: T * snippet frames a video, mask[:T * snippet] (zeros
past a short video's end). Ten crops: the 4 corners and the centre, floor(0.875 H) x
floor(0.875 W), and their mirror images, each through the extractor (the trunk pools globally).
Frame-wise trunks see the frames in chunks of CHUNK; the descriptor extractor sees whole videos.
Built under <out>.tmp-<pid> and renamed: <out> is complete or absent.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time

import numpy as np
from absl import logging

from vad_jax.extract.synthetic import make_extractor

VERSION = 1
CHUNK = 32          # frames a trunk call sees per row (rows of extractor.batch)


def ten_crops(video: np.ndarray) -> list[np.ndarray]:
  """uint8 [N, H, W, 3] -> 10 views [N, h, w, 3]: corners, centre, then their mirror images."""
  n, hh, ww, _ = video.shape
  h, w = int(0.875 * hh), int(0.875 * ww)
  tops = [(0, 0), (0, ww - w), (hh - h, 0), (hh - h, ww - w), ((hh - h) // 2, (ww - w) // 2)]
  crops = [video[:, y:y + h, x:x + w] for y, x in tops]
  return crops + [c[:, :, ::-1] for c in crops]


def frame_features(extractor, video: np.ndarray) -> np.ndarray:
  """uint8 [N, H, W, 3] -> float32 [N, F], one vector a frame."""
  if getattr(extractor, 'parallel', False):          # numpy descriptor: the whole video at once
    return extractor(video[None])[0]
  n, rows = len(video), getattr(extractor, 'batch', 1)
  per_call = rows * CHUNK
  out = []
  for a in range(0, n, per_call):
    part = video[a:a + per_call]
    m = len(part)
    pad = np.concatenate([part, np.repeat(part[-1:], per_call - m, 0)]) if m < per_call else part
    out.append(extractor(pad.reshape(rows, CHUNK, *video.shape[1:])).reshape(per_call, -1)[:m])
  return np.concatenate(out).astype(np.float32)


def snippet_means(x: np.ndarray, snippet: int) -> np.ndarray:
  """[N, ...] -> [T, ...], T = max(floor(N / snippet), 1): the mean of each snippet's rows."""
  t = max(len(x) // snippet, 1)
  if len(x) < snippet:
    return x.mean(0, keepdims=True)
  return x[:t * snippet].reshape(t, snippet, *x.shape[1:]).mean(1)


def extract(data_dir: str, spec, extractor: str, out: str, *, snippet: int = 16, crops: int = 1,
            splits=('train', 'validation', 'test'), overwrite: bool = False,
            progress: bool = True) -> dict:
  """Writes the layout of the module docstring for `splits` of the prepared dataset `spec`.
  Returns meta (also in <out>/meta.json)."""
  from vad_jax.data.prepared import PreparedVideos
  if crops not in (1, 10):
    raise ValueError(f'crops must be 1 or 10, got {crops}')
  if snippet < 1:
    raise ValueError(f'snippet must be >= 1, got {snippet}')
  out = os.path.abspath(out)
  if os.path.exists(out) and os.listdir(out):
    if not overwrite:
      raise FileExistsError(f'{out} exists and is not empty: choose another --out or pass '
                            '--overwrite')
  ex = make_extractor(extractor)
  if crops == 10 and getattr(ex, 'parallel', False):
    raise ValueError('the descriptor extractor describes whole frames (median background, motion '
                     'grid): use crops=1, or a trunk extractor (keras:... or run:...) for 10 crops')
  tmp = f'{out}.tmp-{os.getpid()}'
  shutil.rmtree(tmp, ignore_errors=True)
  meta = {'version': VERSION, 'extractor': ex.fingerprint(), 'prepared': spec.name,
          'snippet': snippet, 'crops': crops, 'splits': {}}
  t0, frames_done = time.perf_counter(), 0
  try:
    for split in splits:
      try:
        src = PreparedVideos(data_dir, spec, split)
      except ValueError:                       # an empty split (e.g. no validation carve)
        continue
      os.makedirs(os.path.join(tmp, split))
      rows, masks = [], []
      bar = None
      if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(src), unit='video', desc=f'extracting {split}')
      for i in range(len(src)):
        example = src.eval_transform(src[i])
        video = example['video'][:int(src.lengths()[i])]
        views = ten_crops(video) if crops == 10 else [video]
        feats = np.stack([snippet_means(frame_features(ex, v), snippet) for v in views], 1)
        feats = feats[:, 0] if crops == 1 else feats          # [T, F] or [T, 10, F]
        rel = os.path.join(split, f'{src.names[i]}.npy')
        np.save(os.path.join(tmp, rel), feats.astype(np.float32))
        label = src.class_names[int(example['label'])]
        rows.append((rel, label, int(example['label'])))
        if 'mask' in example:
          m = np.zeros(len(feats) * snippet, np.uint8)
          k = min(len(m), len(example['mask']))
          m[:k] = example['mask'][:k]
          masks.append(m)
        frames_done += len(video)
        if bar is not None:
          bar.set_postfix(fps=f'{frames_done / max(time.perf_counter() - t0, 1e-9):.0f}')
          bar.update(1)
      if bar is not None:
        bar.close()
      order = sorted(range(len(rows)), key=lambda r: (rows[r][2] == 0, r))   # anomalous first
      with open(os.path.join(tmp, f'{split}.list'), 'w') as f:
        f.writelines(os.path.join(out, rows[r][0]) + '\n' for r in order)
      with open(os.path.join(tmp, f'{split}.csv'), 'w') as f:
        f.write('path,label\n')
        f.writelines(f'{rel},{label}\n' for rel, label, _ in rows)
      if masks and len(masks) == len(rows):
        np.save(os.path.join(tmp, f'gt-{split}.npy'), np.concatenate([masks[r] for r in order]))
      meta['splits'][split] = {'videos': len(rows), 'gt': bool(masks)}
    meta['seconds'] = round(time.perf_counter() - t0, 2)
    with open(os.path.join(tmp, 'meta.json'), 'w') as f:
      json.dump(meta, f, indent=1)
    if os.path.exists(out):
      shutil.rmtree(out)
    os.rename(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  logging.info('features of %s written to %s in %.1f s (%.0f frames/s)', spec.name, out,
               meta['seconds'], frames_done / max(meta['seconds'], 1e-9))
  return meta


def source_from_config(config, split: str, request: dict):
  """The 'prepared_features' source: per-frame features (snippet 1) of the prepared dataset the
  config names, extracted with `data.extractor` on first use and cached under
  <data_dir>/vad_features/<prepared name>/<key>/ (complete or absent)."""
  del request
  from vad_jax.data.features import FeatureSequences
  from vad_jax.data.sources import prepare_spec
  d = config.data
  if not d.data_dir:
    raise ValueError('config.data.data_dir is empty: give the --data_dir of '
                     '`python -m vad_jax.prepare`')
  spec = prepare_spec(config)
  key = hashlib.sha256(json.dumps([make_extractor(d.extractor).fingerprint(), 1, 1, VERSION])
                       .encode()).hexdigest()[:16]
  out = os.path.join(d.data_dir, 'vad_features', spec.name, key)
  if not os.path.exists(os.path.join(out, 'meta.json')):
    logging.info('extracting %s features of %s into %s', d.extractor, spec.name, out)
    try:
      extract(d.data_dir, spec, d.extractor, out, snippet=1, crops=1, progress=False)
    except FileExistsError:
      if not os.path.exists(os.path.join(out, 'meta.json')):
        raise
  from vad_jax.data.prepared import PreparedVideos
  PreparedVideos(d.data_dir, spec, split)   # fails clearly if the split is missing
  return FeatureSequences(os.path.join(out, f'{split}.csv'), tuple(d.class_names), d.clip_len,
                          crops='mean')
