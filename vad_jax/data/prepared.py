"""Prepared videos (`python -m vad_jax.prepare`) as a Source: the 'prepared' data source.

Reads the ArrayRecord dataset through tensorflow_datasets' random-access data source (grain
reads it; no TensorFlow), and the sidecar index for labels and lengths without reading records.
Frames are stored JPEG/PNG-encoded; only the frames an example uses are decoded (Pillow, in
grain's reader threads):
  train_transform  `train_frames` consecutive frames from a random start (shorter videos repeat
                   their last frame); the per-frame truth is dropped (weak labels only)
  eval_transform   every frame, padded to at least `min_frames` (one clip) by repeating the
                   last; 'mask' (per-frame truth, true length) where the split has it
  eval_window      the same for frames [start, stop) only (data.eval_window: long videos)
"""

from __future__ import annotations

import io
import json
import os

import numpy as np

from vad_jax.prepare import builder as prep


def _decode(encoded: list[bytes], indices) -> np.ndarray:
  from PIL import Image
  return np.stack([np.asarray(Image.open(io.BytesIO(encoded[i])).convert('RGB'))
                   for i in indices])


def locate(data_dir: str, spec: prep.PrepareSpec) -> tuple[str, str]:
  """(dataset folder, index file) of a prepared dataset; FileNotFoundError saying what to run
  (and what IS prepared there) when it is missing."""
  out, index = prep.dataset_dir(data_dir, spec), prep.index_path(data_dir, spec)
  if not (os.path.exists(index) and os.path.exists(os.path.join(out, 'dataset_info.json'))):
    here = sorted(n[:-len('.index.json')] for n in os.listdir(prep.root(data_dir))
                  if n.endswith('.index.json')) if os.path.isdir(prep.root(data_dir)) else []
    raise FileNotFoundError(
        f'{spec.name} is not prepared in data_dir={data_dir!r} (prepared there: {here or "none"}).'
        f' Run: python -m vad_jax.prepare {spec.dataset} --manual_dir=RAW --data_dir={data_dir} '
        f'--fps={spec.fps or 0:g} --height={spec.height} --width={spec.width}')
  return out, index


class PreparedVideos:
  """grain random-access Source of one split of a prepared dataset (see the module docstring).

  Examples: {'encoded': list of frame bytes, 'label': int32, 'index': int32, 'mask': uint8 [N]
  where known}; the transforms give 'video' uint8 [N, H, W, 3].
  """
  sequence_field = 'video'

  def __init__(self, data_dir: str, spec: prep.PrepareSpec, split: str, train_frames: int = 1,
               min_frames: int = 1):
    if split not in prep.SPLITS:
      raise ValueError(f'unknown split {split!r}')
    self.path, index_file = locate(data_dir, spec)
    with open(index_file) as f:
      index = json.load(f)
    self.spec, self.split = spec, split
    self.class_names = tuple(index['class_names'])
    part = index['splits'][split]
    if not part['names']:
      raise ValueError(f'{spec.name}: the {split} split is empty (see {index_file})')
    self.names = tuple(part['names'])
    self._labels = np.asarray(part['labels'], np.int32)
    self._lengths = np.asarray(part['lengths'], np.int64)
    self._has_mask = bool(all(part['has_mask']))
    if any(part['has_mask']) and not self._has_mask:
      raise ValueError(f'{spec.name}: some {split} videos have per-frame truth and some not')
    self.train_frames, self.min_frames = int(train_frames), int(min_frames)
    self._ds = None

  def _source(self):
    if self._ds is None:
      import tensorflow_datasets as tfds
      self._ds = tfds.builder_from_directory(self.path).as_data_source(split=self.split)
      if len(self._ds) != len(self.names):
        raise ValueError(f'{self.path}: the {self.split} split has {len(self._ds)} records, its '
                         f'index {len(self.names)}: prepare again into an empty data_dir')
    return self._ds

  def __getstate__(self):
    return dict(self.__dict__, _ds=None)       # grain pickles sources; reopen in each worker

  def __len__(self) -> int:
    return len(self.names)

  def __repr__(self) -> str:
    return f'PreparedVideos({self.path!r}, {self.split!r}, {len(self)} videos)'

  def labels(self) -> np.ndarray:
    return self._labels.copy()

  def lengths(self) -> np.ndarray:
    return self._lengths.copy()

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(index)
    rec = self._source()[index]
    name = rec['name'].decode() if isinstance(rec['name'], bytes) else str(rec['name'])
    if name != self.names[index]:
      raise ValueError(f'{self.path}: record {index} of {self.split} is {name!r}, the index says '
                       f'{self.names[index]!r}: prepare again into an empty data_dir')
    out = {'encoded': list(rec['frames']), 'label': np.int32(rec['label']),
           'index': np.int32(index)}
    if self._has_mask:
      out['mask'] = np.asarray(rec['mask'], np.uint8)
    return out

  def train_transform(self, example: dict, rng: np.random.Generator) -> dict:
    n, total = self.train_frames, len(example['encoded'])
    start = int(rng.integers(0, max(total - n, 0) + 1))
    frames = np.minimum(start + np.arange(n), total - 1)
    return {'video': _decode(example['encoded'], frames), 'label': example['label'],
            'index': example['index']}

  def eval_transform(self, example: dict) -> dict:
    return self.eval_window(example, 0, None)

  def eval_window(self, example: dict, start: int, stop: int | None) -> dict:
    """eval_transform restricted to frames [start, stop), decoding only those."""
    total = len(example['encoded'])
    stop = max(total, self.min_frames) if stop is None else stop
    frames = np.minimum(np.arange(start, stop), total - 1)
    out = {'video': _decode(example['encoded'], frames), 'label': example['label'],
           'index': example['index']}
    if 'mask' in example:
      out['mask'] = example['mask'][start:stop]
    return out
