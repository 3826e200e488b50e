"""Pre-extracted per-frame feature sequences listed in a CSV file: the 'features' source.

List file: one video a line, `path,label`; label is a name from `class_names` or an integer id;
relative paths resolve against the list file's directory; blank lines, '#' comments and an
optional `path,label` header are skipped. Each path is a `.npy` of float [T, F] (one vector a
frame) or [T, crops, F] (several crops a frame, e.g. ten-crop features).

A training example is a clip of `clip_len` vectors, sampled as seed 003 does: [0, T) is split
into `clip_len` equal segments and one index is drawn inside each (temporal jitter); evaluation
takes the segment centres. Hand-written because no kept library reads such lists for grain.
"""

from __future__ import annotations

import csv
import os
import threading

import numpy as np

CROPS = ('mean', 'first')
# np.load parses .npy headers with ast.literal_eval, which is not thread-safe in CPython 3.11
# ("SystemError: AST constructor recursion depth mismatch" under grain's reader threads).
_NPY_HEADER_LOCK = threading.Lock()


def clip_indices(length: int, clip_len: int, rng: np.random.Generator | None = None) -> np.ndarray:
  """int64 [clip_len] frame indices of one clip of a sequence of `length` vectors.

  Segment k holds the indices [floor(k * length / clip_len), floor((k + 1) * length / clip_len));
  with `rng` one of them is drawn uniformly (temporal jitter), without it the segment's centre
  (lo + (hi - lo) // 2) is taken. When length < clip_len some segments are empty and give their
  start, floor(k * length / clip_len): indices repeat, always inside [0, length).
  """
  if length < 1 or clip_len < 1:
    raise ValueError(f'need length >= 1 and clip_len >= 1, got {length} and {clip_len}')
  edges = np.arange(clip_len + 1, dtype=np.int64) * length // clip_len
  lo, hi = edges[:-1], np.maximum(edges[1:], edges[:-1] + 1)
  if rng is None:
    return lo + (hi - lo) // 2
  return rng.integers(lo, hi).astype(np.int64)


def _fail(where: str, message: str, exc=ValueError):
  raise exc(f'{where}: {message}')


class FeatureSequences:
  """grain random-access source of feature sequences (see the module docstring).

  Examples: {'features': float32 [T, F], 'label': int32, 'index': int32}; the transforms give
  'features' [clip_len, F]. Everything is validated at construction from the .npy headers.
  """
  sequence_field = 'features'

  def __init__(self, list_path: str, class_names: tuple[str, ...], clip_len: int,
               crops: str = 'mean'):
    if crops not in CROPS:
      raise ValueError(f'crops must be one of {CROPS}, got {crops!r}')
    if clip_len < 1:
      raise ValueError(f'clip_len must be >= 1, got {clip_len}')
    if not os.path.isfile(list_path):
      raise FileNotFoundError(f'{list_path}: feature list file not found')
    self.list_path = list_path
    self.class_names = tuple(class_names)
    self.clip_len = int(clip_len)
    self.crops = crops
    self.paths, labels, lengths = [], [], []
    self._feature_dim, first = None, None
    index = {name: i for i, name in enumerate(self.class_names)}
    base = os.path.dirname(os.path.abspath(list_path))
    with open(list_path, newline='') as f:
      for line_no, row in enumerate(csv.reader(f), start=1):
        where = f'{list_path}:{line_no}'
        if not row or not ''.join(row).strip() or row[0].lstrip().startswith('#'):
          continue
        row = [c.strip() for c in row]
        if len(row) != 2:
          _fail(where, f'expected 2 columns `path,label`, got {len(row)}: {",".join(row)!r}')
        path, label = row
        if not self.paths and (path, label) == ('path', 'label'):
          continue
        labels.append(self._label(where, label, index))
        full = path if os.path.isabs(path) else os.path.join(base, path)
        if not os.path.isfile(full):
          _fail(where, f'feature file {full!r} not found', FileNotFoundError)
        try:
          arr = np.load(full, mmap_mode='r')
        except Exception as e:  # noqa: BLE001  (any unreadable file is a bad input line)
          _fail(where, f'cannot read {full!r} as .npy: {e}'.replace('\n', ' '))
        if not isinstance(arr, np.ndarray) or arr.ndim not in (2, 3):
          _fail(where, f'{full!r} has shape {getattr(arr, "shape", None)}; expected [T, F] or '
                f'[T, crops, F]')
        if not np.issubdtype(arr.dtype, np.floating):
          _fail(where, f'{full!r} has dtype {arr.dtype}; expected float features')
        if 0 in arr.shape:
          _fail(where, f'{full!r} has shape {arr.shape}: an empty axis (no vectors, crops or '
                'features)')
        dim = arr.shape[-1]
        if self._feature_dim is None:
          self._feature_dim, first = dim, where
        elif dim != self._feature_dim:
          _fail(where, f'{full!r} has {dim} features a vector; {first} has {self._feature_dim}')
        self.paths.append(full)
        lengths.append(arr.shape[0])
    if not self.paths:
      raise ValueError(f'{list_path}: lists no videos')
    self._labels = np.asarray(labels, np.int32)
    self._lengths = np.asarray(lengths, np.int64)

  def _label(self, where: str, label: str, index: dict) -> int:
    if label in index:
      return index[label]
    try:
      value = int(label)
    except ValueError:
      value = None
    if value is None or not 0 <= value < len(self.class_names):
      _fail(where, f'label {label!r} is neither one of {list(self.class_names)} nor an id in '
            f'[0, {len(self.class_names)})')
    return value

  @property
  def feature_dim(self) -> int:
    return self._feature_dim

  def __len__(self) -> int:
    return len(self.paths)

  def __repr__(self) -> str:
    return (f'FeatureSequences({self.list_path!r}, {len(self)} videos, F={self.feature_dim}, '
            f'clip_len={self.clip_len})')

  def labels(self) -> np.ndarray:
    return self._labels.copy()

  def lengths(self) -> np.ndarray:
    return self._lengths.copy()

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(index)
    with _NPY_HEADER_LOCK:
      a = np.load(self.paths[index], mmap_mode='r')
    if a.ndim == 3:
      a = a.mean(axis=1) if self.crops == 'mean' else a[:, 0]
    return {'features': np.array(a, np.float32), 'label': self._labels[index],
            'index': np.int32(index)}

  def _clip(self, example: dict, rng) -> dict:
    x = example['features']
    return {**example, 'features': x[clip_indices(len(x), self.clip_len, rng)]}

  def train_transform(self, example: dict, rng: np.random.Generator) -> dict:
    """One index drawn inside each of clip_len equal segments (temporal jitter)."""
    return self._clip(example, rng)

  def eval_transform(self, example: dict) -> dict:
    """The centre of each of clip_len equal segments."""
    return self._clip(example, None)
