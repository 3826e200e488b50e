"""Prepare once: a raw dataset -> per-video decoded work files -> ArrayRecord through a TFDS builder.

  <data_dir>/vad_videos/<dataset>_<H>x<W>_<fps>fps/1.0.0/   the TFDS dataset (ArrayRecord shards)
  <data_dir>/vad_videos/<dataset>_<H>x<W>_<fps>fps.index.json  names, labels, frame counts per
                                                            split (labels()/lengths() without
                                                            reading a record)
  <data_dir>/vad_videos/<dataset>_<H>x<W>_<fps>fps.work/   while preparing: one .npz a video

Stage 1 decodes every video once (PyAV; vad_jax.data.video: resampled to `fps`, resized) in
worker processes and writes its frames, JPEG/PNG-encoded, to `<name>.npz` (written to a
temporary name, then renamed: a file there is complete). An interrupted preparation reruns
only the videos without a file: it is resumable. A video that cannot be decoded (corrupt,
truncated, no frames) is skipped, counted and listed in the index ('skipped'), because one bad
file among 1,900 should not stop a preparation (the summary says which and how many; a skipped
test video changes the test set, so it is also logged as a warning).
Stage 2 writes the TFDS dataset from the work files (TFDS builds it in a temporary folder and
renames it when complete, so a reader never sees a half-written dataset), then the index, then
deletes the work files. No TensorFlow is needed (tensorflow_datasets' array_record path).

Example fields: 'frames' (JPEG/PNG bytes, one per kept frame), 'mask' uint8 [N] per-frame
truth ('has_mask' False: none, weakly labelled video), 'label' (class id), 'name',
'source_frames' int32 [N] (the source frame each kept frame shows), 'src_fps' float32.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import json
import multiprocessing
import os
import shutil
import time

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

BUILDER = 'vad_videos'
VERSION = '1.0.0'
SPLITS = ('train', 'validation', 'test')


@dataclasses.dataclass(frozen=True)
class PrepareSpec:
  """What a prepared dataset is a function of (besides the raw files)."""
  dataset: str
  height: int
  width: int
  fps: float | None = None        # None: every source frame
  val_fraction: float = 0.1
  seed: int = 0
  encoding: str = 'jpeg'          # jpeg | png
  quality: int = 90               # JPEG quality

  @property
  def name(self) -> str:
    fps = 'native' if not self.fps else f'{self.fps:g}'.replace('.', 'p') + 'fps'
    return f'{self.dataset}_{self.height}x{self.width}_{fps}'


def root(data_dir: str) -> str:
  return os.path.join(data_dir, BUILDER)


def dataset_dir(data_dir: str, spec: PrepareSpec) -> str:
  return os.path.join(root(data_dir), spec.name, VERSION)


def index_path(data_dir: str, spec: PrepareSpec) -> str:
  return os.path.join(root(data_dir), spec.name + '.index.json')


def work_dir(data_dir: str, spec: PrepareSpec) -> str:
  return os.path.join(root(data_dir), spec.name + '.work')


def write_json(path: str, obj) -> None:
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=1)
  os.replace(tmp, path)


# ----------------------------------------------------------------------------- stage 1: decode
def _encode(frame: np.ndarray, encoding: str, quality: int) -> bytes:
  from PIL import Image
  buf = io.BytesIO()
  if encoding == 'jpeg':
    Image.fromarray(frame).save(buf, format='JPEG', quality=quality)
  else:
    Image.fromarray(frame).save(buf, format='PNG', compress_level=1)
  return buf.getvalue()


def decode_item(item, spec: PrepareSpec) -> tuple[dict, list[str]]:
  """One RawVideo -> ({npz arrays}, warnings). Raises vad_jax.data.video.VideoError."""
  from vad_jax.data import annotations, video
  size = (spec.height, spec.width)
  if item.kind == 'video':
    frames, src_fps, num_src = video.decode(item.paths[0], spec.fps, size)
    shown = video.resample_indices(num_src, src_fps, spec.fps)
    if len(shown) != len(frames):
      raise video.VideoError(f'{item.paths[0]}: decoded {len(frames)} frames, the frame-rate '
                             f'mapping expects {len(shown)}')
  else:   # image folders: every file is one kept source frame
    frames = np.stack([_resize(video.read_frame_image(p), size) for p in item.paths])
    shown = np.asarray(item.frame_numbers, np.int64)
    src_fps, num_src = float('nan'), int(shown.max()) + 1
  warnings = []
  if item.intervals is None:
    mask = np.zeros(0, np.uint8)
  else:
    last = max([num_src] + [e for _, e in item.intervals])
    truth, warnings = annotations.frame_truth(item.intervals, last, base=1, where=item.where)
    mask = truth[shown].astype(np.uint8)
  encoded = [_encode(f, spec.encoding, spec.quality) for f in frames]
  offsets = np.cumsum([0] + [len(b) for b in encoded]).astype(np.int64)
  return {'encoded': np.frombuffer(b''.join(encoded), np.uint8), 'offsets': offsets,
          'mask': mask, 'has_mask': np.bool_(item.intervals is not None),
          'source_frames': shown.astype(np.int32), 'src_fps': np.float32(src_fps)}, warnings


def _resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  if frame.shape[:2] == tuple(size):
    return frame
  from PIL import Image
  return np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.BILINEAR))


def _work_file(work: str, item) -> str:
  return os.path.join(work, item.split, item.name + '.npz')


def _skip_file(work: str, item) -> str:
  return os.path.join(work, item.split, item.name + '.skipped.json')


def _decode_job(args) -> tuple[str, str, int, list[str]]:
  """Worker: decode one item into its work file. -> (name, 'ok'|'skipped', frames, messages)."""
  item, spec, work = args
  from vad_jax.data.video import VideoError
  try:
    arrays, warnings = decode_item(item, spec)
  except VideoError as e:
    write_json(_skip_file(work, item), {'name': item.name, 'split': item.split,
                                        'reason': str(e)})
    return item.name, 'skipped', 0, [str(e)]
  path = _work_file(work, item)
  tmp = f'{path}.tmp-{os.getpid()}.npz'
  np.savez(tmp, **arrays)
  os.replace(tmp, path)
  return item.name, 'ok', len(arrays['offsets']) - 1, warnings


def decode_all(items, spec: PrepareSpec, work: str, workers: int, progress: bool = True) -> dict:
  """Stage 1 over `items` (resumable). -> {'decoded': n, 'reused': n, 'skipped': n, 'frames': n,
  'seconds': s}."""
  for split in SPLITS:
    os.makedirs(os.path.join(work, split), exist_ok=True)
  todo = [it for it in items if not os.path.exists(_work_file(work, it))
          and not os.path.exists(_skip_file(work, it))]
  stats = {'decoded': 0, 'reused': len(items) - len(todo), 'skipped': 0, 'frames': 0}
  if stats['reused']:
    logging.info('resuming: %d of %d videos already decoded', stats['reused'], len(items))
  start = time.time()
  bar = None
  if progress:
    from tqdm import tqdm
    bar = tqdm(total=len(todo), unit='video', desc=f'decoding {spec.name}', smoothing=0.1)

  def done(result):
    name, status, frames, messages = result
    for m in messages:
      logging.warning('%s: %s', name, m)
    stats['skipped' if status == 'skipped' else 'decoded'] += 1
    stats['frames'] += frames
    if bar is not None:
      elapsed = max(time.time() - start, 1e-9)
      bar.set_postfix(fps=f'{stats["frames"] / elapsed:.0f}', skipped=stats['skipped'])
      bar.update(1)

  jobs = [(it, spec, work) for it in todo]
  if workers <= 1 or len(jobs) <= 1:
    for job in jobs:
      done(_decode_job(job))
  else:
    ctx = multiprocessing.get_context('spawn')   # the caller may hold JAX/threads: never fork
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
      for result in pool.map(_decode_job, jobs, chunksize=1):
        done(result)
  if bar is not None:
    bar.close()
  stats['seconds'] = time.time() - start
  return stats


# ----------------------------------------------------------------------------- stage 2: TFDS
class VadVideos(tfds.core.GeneratorBasedBuilder):
  """Decoded videos of one raw dataset (see vad_jax.prepare.builder)."""
  VERSION = tfds.core.Version(VERSION)
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Run `python -m vad_jax.prepare DATASET --manual_dir=RAW`.'

  def __init__(self, *, items, spec, class_names, work, **kwargs):
    self._items, self._spec, self._class_names, self._work = items, spec, class_names, work
    super().__init__(config=tfds.core.BuilderConfig(name=spec.name, version=VERSION),
                     file_format='array_record', **kwargs)

  def _info(self):
    f = tfds.features
    return tfds.core.DatasetInfo(
        builder=self, disable_shuffling=True,
        description='vad_jax prepared videos: JPEG/PNG frames, per-frame truth where known.',
        features=f.FeaturesDict({
            'frames': f.Sequence(f.Tensor(shape=(), dtype=np.object_)),
            'mask': f.Tensor(shape=(None,), dtype=np.uint8),
            'has_mask': f.Tensor(shape=(), dtype=np.bool_),
            'label': f.ClassLabel(names=list(self._class_names)),
            'name': f.Text(),
            'source_frames': f.Tensor(shape=(None,), dtype=np.int32),
            'src_fps': f.Tensor(shape=(), dtype=np.float32),
        }))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split) for split in SPLITS
            if any(it.split == split for it in self._kept(split))}

  def _kept(self, split):
    return [it for it in self._items
            if it.split == split and os.path.exists(_work_file(self._work, it))]

  def _generate_examples(self, split):
    label = {n: i for i, n in enumerate(self._class_names)}
    for i, it in enumerate(self._kept(split)):
      with np.load(_work_file(self._work, it)) as z:
        enc, off = z['encoded'].tobytes(), z['offsets']
        yield f'{i:08d}', {
            'frames': [enc[a:b] for a, b in zip(off[:-1], off[1:])],
            'mask': z['mask'], 'has_mask': bool(z['has_mask']), 'label': label[it.label],
            'name': it.name, 'source_frames': z['source_frames'], 'src_fps': z['src_fps']}



def write_index(items, spec: PrepareSpec, class_names, work: str, path: str) -> dict:
  """The sidecar index (records are in this order: TFDS keeps generation order)."""
  index = {'spec': dataclasses.asdict(spec), 'class_names': list(class_names), 'splits': {},
           'skipped': []}
  label = {n: i for i, n in enumerate(class_names)}
  for split in SPLITS:
    names, labels, lengths, has_mask = [], [], [], []
    for it in items:
      if it.split != split:
        continue
      wf = _work_file(work, it)
      if not os.path.exists(wf):
        with open(_skip_file(work, it)) as f:
          index['skipped'].append(json.load(f))
        continue
      with np.load(wf) as z:
        lengths.append(int(len(z['offsets']) - 1))
        has_mask.append(bool(z['has_mask']))
      names.append(it.name)
      labels.append(label[it.label])
    index['splits'][split] = {'names': names, 'labels': labels, 'lengths': lengths,
                              'has_mask': has_mask}
  write_json(path, index)
  return index


def prepare(spec: PrepareSpec, manual_dir: str, data_dir: str, workers: int | None = None,
            keep_work: bool = False, progress: bool = True) -> str:
  """Prepares `spec.dataset` from `manual_dir` into `data_dir`; returns the dataset folder.
  Idempotent: a finished preparation is reused; an interrupted one resumes."""
  from vad_jax.prepare import raw
  if spec.dataset not in raw.DATASETS:
    raise ValueError(f'unknown dataset {spec.dataset!r}; known: {sorted(raw.DATASETS)}')
  if spec.encoding not in ('jpeg', 'png'):
    raise ValueError(f"encoding must be 'jpeg' or 'png', got {spec.encoding!r}")
  if spec.height < 8 or spec.width < 8:
    raise ValueError(f'height and width must be >= 8, got {spec.height}x{spec.width}')
  out, idx = dataset_dir(data_dir, spec), index_path(data_dir, spec)
  if os.path.exists(idx) and os.path.exists(os.path.join(out, 'dataset_info.json')):
    logging.info('%s is already prepared in %s', spec.name, out)
    return out
  if not os.path.isdir(manual_dir):
    raise FileNotFoundError(f'--manual_dir={manual_dir!r} is not a folder')
  find, class_names = raw.DATASETS[spec.dataset]
  items = find(manual_dir, val_fraction=spec.val_fraction, seed=spec.seed)
  if not items:
    raise ValueError(f'no {spec.dataset} videos found under {manual_dir!r}')
  counts = {s: sum(it.split == s for it in items) for s in SPLITS}
  logging.info('%s: %s videos found under %s', spec.dataset, counts, manual_dir)
  work = work_dir(data_dir, spec)
  stats = decode_all(items, spec, work, workers or os.cpu_count() or 1, progress)
  if not os.path.exists(os.path.join(out, 'dataset_info.json')):
    builder = VadVideos(items=items, spec=spec, class_names=class_names, work=work,
                               data_dir=data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  index = write_index(items, spec, class_names, work, idx)
  for s in index['skipped']:
    logging.warning('skipped %s video %s: %s', s['split'], s['name'], s['reason'])
  if not keep_work:
    shutil.rmtree(work, ignore_errors=True)
  kept = {s: len(v['names']) for s, v in index['splits'].items()}
  logging.info('prepared %s in %s: %s videos, %d skipped; decoded %d videos / %d frames in '
               '%.1f s (%.2f videos/s, %.0f frames/s), %d reused', spec.name, out, kept,
               len(index['skipped']), stats['decoded'], stats['frames'], stats['seconds'],
               stats['decoded'] / max(stats['seconds'], 1e-9),
               stats['frames'] / max(stats['seconds'], 1e-9), stats['reused'])
  return out
