"""Published feature sets (RTFM, UR-DMU, VadCLIP, Sultani's C3D) as a grain random-access source.

List formats (`read_list`), one `Entry` per video, in list order:
  rtfm   one `.npy` path a line, each [T, crops, F] (`ucf-i3d.list`: [T, 10, 2048], anomalous
         videos first) or [T, F] (C3D fc6: [T, 4096]).
  crops  one line a crop file `<video>__<k>.npy` of [T, F] (UR-DMU, XD-Violence's 5 crops);
         grouped by video, ordered by k. Every video must have the same crop ids.
  csv    `path,label` (VadCLIP; optional header `path,label`); label a class name (or an id, or
         XD's 'A' / 'B1-0-0' codes with two classes); crop-suffixed paths group as above (the
         VadCLIP UCF test list holds crop `__5` only: a one-crop set).
Each row of a file is one snippet of `snippet_frames` (16) frames. Training turns a video into a
MIL bag of S segments (`rtfm_segments` or `sultani_segments`); evaluation keeps every snippet and
crop (systems average their outputs over crops). `build_gt` builds the per-frame truth the way
the RTFM repos build `gt-ucf.npy`. Hand-written because no kept library reads these lists.
"""

from __future__ import annotations

import collections
import copy
import csv
import dataclasses
import os
import re

import numpy as np

from vad_jax.classes import CLASS_NAMES
from vad_jax.data.annotations import Annotation, frame_truth, split_crop, video_key
from vad_jax.data.features import _NPY_HEADER_LOCK

FORMATS = ('auto', 'rtfm', 'crops', 'csv')
BINS = ('rtfm', 'sultani')
TRAIN_CROPS = ('random', 'mean')
_CROP_FILE = re.compile(r'__\d+\.npy$', re.IGNORECASE)
_XD_LABEL = re.compile(r'_label_([ABG])')


@dataclasses.dataclass(frozen=True)
class Entry:
  """One video of a list: key (`video_key`), paths (one per crop file, or one file holding all
  crops), label (the list's label text, None when the list has none), where ('list:line')."""
  key: str
  paths: tuple[str, ...]
  label: str | None
  where: str


# ----------------------------------------------------------------------------- list files
class _Resolver:
  """Finds a listed path: as written (absolute) or against the list's folder (relative); then
  `root`/path, then a file of the same basename anywhere under `root` (lists written on another
  machine)."""

  def __init__(self, list_dir: str, root: str | None):
    root = root or None   # '' (a config default) means no root
    if root is not None and not os.path.isdir(root):
      raise FileNotFoundError(f'{root}: feature root folder not found')
    self.list_dir, self.root, self._index = list_dir, root, None

  def _by_basename(self) -> dict[str, list[str]]:
    if self._index is None:
      self._index = collections.defaultdict(list)
      for folder, _, files in os.walk(self.root):
        for f in files:
          self._index[f].append(os.path.join(folder, f))
    return self._index

  def __call__(self, where: str, path: str) -> str:
    tried = [path if os.path.isabs(path) else os.path.join(self.list_dir, path)]
    if self.root is not None and not os.path.isabs(path):
      tried.append(os.path.join(self.root, path))
    for p in tried:
      if os.path.isfile(p):
        return p
    if self.root is not None:
      found = self._by_basename().get(path.replace('\\', '/').rsplit('/', 1)[-1], [])
      if len(found) > 1:
        raise ValueError(f'{where}: {path!r} matches {len(found)} files under {self.root}: '
                         f'{found[:3]}; keep one or give the full path')
      if found:
        return found[0]
    under = f' nor by name under root {self.root!r}' if self.root is not None else ''
    raise FileNotFoundError(f'{where}: feature file {path!r} not found (looked at {tried}'
                            f'{under})')


def _rows(path: str) -> list[tuple[str, str]]:
  """(where, text) of every line that is neither blank nor a '#' comment."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: feature list file not found')
  with open(path, encoding='utf-8-sig', newline='') as f:
    return [(f'{path}:{i}', line.strip()) for i, line in enumerate(f, start=1)
            if line.strip() and not line.lstrip().startswith('#')]


def _detect(rows) -> str:
  if any(',' in text for _, text in rows):
    return 'csv'
  if any(_CROP_FILE.search(text) for _, text in rows):
    return 'crops'
  return 'rtfm'


def _csv_rows(rows) -> list[tuple[str, str, str]]:
  out = []
  for where, text in rows:
    cols = [c.strip() for c in next(csv.reader([text]))]
    if not out and [c.lower() for c in cols] == ['path', 'label']:
      continue
    if len(cols) != 2 or not all(cols):
      raise ValueError(f'{where}: expected 2 columns `path,label`, got {len(cols)}: {text!r}')
    out.append((where, cols[0], cols[1]))
  return out


def _span(ks) -> str:
  """'[0..9]' for a contiguous run of crop ids, else '[0, 2, 5]'."""
  ks = sorted(ks)
  if len(ks) > 2 and ks[-1] - ks[0] == len(ks) - 1:
    return f'[{ks[0]}..{ks[-1]}]'
  return '[' + ', '.join(str(k) for k in ks) + ']'


def _group_crops(rows) -> list[Entry]:
  """Entries from (where, path, label) rows of crop files `<video>__<k>.npy`."""
  groups: dict[str, dict[int, tuple]] = {}
  for where, path, label in rows:
    stem = path.replace('\\', '/').rsplit('/', 1)[-1]
    stem = stem[:-4] if stem.lower().endswith('.npy') else stem
    _, k = split_crop(stem)
    if k is None:
      raise ValueError(f'{where}: {path!r} has no `__<k>` crop suffix; a crop list names one '
                       'crop file `<video>__<k>.npy` a line')
    crops = groups.setdefault(video_key(path), {})
    if k in crops:
      raise ValueError(f'{where}: crop {k} of video {video_key(path)!r} is listed twice: here '
                       f'and at {crops[k][0]}')
    first = next(iter(crops.values()), None)
    if first is not None and first[2] != label:
      raise ValueError(f'{where}: video {video_key(path)!r} has label {label!r} here and '
                       f'{first[2]!r} at {first[0]}')
    crops[k] = (where, path, label)
  sets = collections.Counter(frozenset(c) for c in groups.values())
  common = max(sets, key=sets.get)   # the most frequent crop set (ties: the first seen)
  if len(common) > 1 and common != frozenset(range(len(common))):
    key, crops = next((k, c) for k, c in groups.items() if frozenset(c) == common)
    raise ValueError(f'{next(iter(crops.values()))[0]}: video {key!r} has crops {_span(common)}; '
                     f'expected crops 0..C-1 (or a single crop, like VadCLIP test lists)')
  out = []
  for key, crops in groups.items():
    where = next(iter(crops.values()))[0]
    if frozenset(crops) != common:
      diff = [f'{what} {_span(ks)}' for what, ks in
              (('missing', common - set(crops)), ('extra', set(crops) - common)) if ks]
      raise ValueError(f'{where}: video {key!r} has crops {_span(crops)} ({", ".join(diff)}); '
                       f'the other videos have {_span(common)}: an incomplete or inconsistent '
                       'crop set')
    ks = sorted(crops)
    out.append(Entry(key, tuple(crops[k][1] for k in ks), crops[ks[0]][2], where))
  return out


def read_list(path: str, fmt: str = 'auto', root: str | None = None) -> list[Entry]:
  """Entries of a feature list (see the module docstring for `fmt`), in list order.

  Paths resolve as written (absolute) or against the list's folder, then against `root`, then
  by basename anywhere under `root`. Missing files raise FileNotFoundError naming list:line and
  the path; a video listed twice raises ValueError naming both lines.
  """
  if fmt not in FORMATS:
    raise ValueError(f'fmt must be one of {FORMATS}, got {fmt!r}')
  rows = _rows(path)
  if not rows:
    raise ValueError(f'{path}: lists no videos')
  fmt = _detect(rows) if fmt == 'auto' else fmt
  resolve = _Resolver(os.path.dirname(os.path.abspath(path)), root)
  if fmt == 'csv':
    items = _csv_rows(rows)
  else:
    items = [(where, text, None) for where, text in rows]
  if not items:
    raise ValueError(f'{path}: lists no videos')
  items = [(where, resolve(where, p), label) for where, p, label in items]
  if fmt == 'crops' or (fmt == 'csv' and any(_CROP_FILE.search(p) for _, p, _ in items)):
    return _group_crops(items)
  out, seen = [], {}
  for where, p, label in items:
    key = video_key(p)
    if key in seen:
      raise ValueError(f'{where}: video {key!r} is listed twice: here and at {seen[key]}')
    seen[key] = where
    out.append(Entry(key, (p,), label, where))
  return out


def subset(entries, indices) -> list[Entry]:
  """The entries at `indices` (e.g. from vad_jax.data.splits.carve_validation), in that order."""
  return [entries[int(i)] for i in indices]


# ----------------------------------------------------------------------------- labels
def infer_label(key: str, class_names) -> str:
  """The class of a video from its name, for lists without a label column.

  XD-Violence: '..._label_A...' is class_names[0], '_label_B...' / '_label_G...' class_names[1]
  (two classes only). UCF-Crime: the name starts with its class ('Abuse028_x264' -> 'Abuse',
  'Normal_Videos_003_x264' -> 'Normal'), case-insensitively, spelled as in class_names.
  """
  names = tuple(class_names)
  m = _XD_LABEL.search(key)
  if m:
    if m.group(1) == 'A':
      return names[0]
    if len(names) == 2:
      return names[1]
    raise ValueError(f'video {key!r} is an XD-Violence violent video (label_{m.group(1)}); '
                     f'with {len(names)} classes {list(names)} its class is ambiguous: use a '
                     'CSV list `path,label` with a label column')
  low = key.lower()
  for name in sorted(names, key=len, reverse=True):
    rest = low[len(name):]
    if low.startswith(name.lower()) and (not rest or rest[0] == '_' or rest[0].isdigit()):
      return name
  raise ValueError(f'cannot infer the class of video {key!r} from its name (known classes '
                   f'{list(names)}; XD-Violence names hold label_A/B/G): use a CSV list '
                   '`path,label` with a label column')


def label_index(entry: Entry, class_names) -> int:
  """Class id of an entry: its label text (a class name, an integer id, or with two classes an
  XD-Violence code 'A' / 'B1-0-0' / 'G-...'), or `infer_label` of its key when it has none."""
  names = tuple(class_names)
  try:
    label = infer_label(entry.key, names) if entry.label is None else entry.label
  except ValueError as e:
    raise ValueError(f'{entry.where}: {e}') from None
  if label in names:
    return names.index(label)
  if label.isdigit() and int(label) < len(names):
    return int(label)
  if len(names) == 2 and re.fullmatch(r'A|(B\d|G)(-(B\d|G|0))*', label):
    return 0 if label == 'A' else 1
  raise ValueError(f'{entry.where}: label {label!r} of video {entry.key!r} is neither one of '
                   f'{list(names)} nor an id in [0, {len(names)})')


# ----------------------------------------------------------------------------- MIL segments
def _bin_means(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
  """float32 [S, ...]: mean of x[lo_i:hi_i], or x[lo_i] where hi_i <= lo_i; the bins must be
  contiguous (hi_i == lo_{i+1}) with lo_i < len(x), which np.add.reduceat needs."""
  starts = lo if hi[-1] >= len(x) else np.append(lo, hi[-1])
  sums = np.add.reduceat(x, starts, axis=0, dtype=np.float64)[:len(lo)]
  counts = np.maximum(hi - lo, 1).reshape((-1,) + (1,) * (x.ndim - 1))
  return (sums / counts).astype(np.float32)


def _check_bins(x, segments: int) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim < 1 or len(x) < 1 or segments < 1:
    raise ValueError(f'need >= 1 snippet and >= 1 segment, got shape {x.shape}, S={segments}')
  return x


def rtfm_segments(x, segments: int = 32) -> np.ndarray:
  """float32 [S, F] from x [T, F], as RTFM/UR-DMU train: edges = int(linspace(0, T, S + 1));
  segment i is the mean of x[e_i:e_{i+1}], or x[e_i] when that bin is empty (T < S)."""
  x = _check_bins(x, segments)
  edges = np.linspace(0, len(x), segments + 1).astype(np.int64)
  lo = np.minimum(edges[:-1], len(x) - 1)
  return _bin_means(x, lo, np.maximum(edges[1:], lo))


def sultani_segments(x, segments: int = 32) -> np.ndarray:
  """float32 [S, F] from x [T, F], as Sultani et al.'s MATLAB: edges = round(linspace(1, T,
  S + 1)) (1-based, half away from zero); segment i is the mean of rows edges_i ..
  edges_{i+1} - 1 (1-based inclusive), or row edges_i when that is empty. As in the original,
  the last row (T) is in no segment unless T = 1."""
  x = _check_bins(x, segments)
  edges = np.floor(np.linspace(1, len(x), segments + 1) + 0.5).astype(np.int64)
  lo = edges[:-1] - 1                   # 0-based first row
  hi = np.maximum(edges[1:] - 1, lo)    # 0-based end (exclusive): 1-based edges_{i+1} - 1
  return _bin_means(x, lo, hi)


SEGMENT_RULES = {'rtfm': rtfm_segments, 'sultani': sultani_segments}


# ----------------------------------------------------------------------------- ground truth
def build_gt(entries, lengths_T, annotations: dict[str, Annotation], snippet_frames: int = 16,
             base: int = 1, class_names=CLASS_NAMES,
             warnings: list | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(gt uint8 [sum_v T_v * snippet_frames], offsets int64 [V + 1]): the per-frame truth of the
  videos in LIST ORDER, concatenated, as the RTFM repos build `gt-ucf.npy`.

  Video v covers T_v * snippet_frames frames, 1 on its annotated ones (`frame_truth` with
  `base`; RTFM's own builder reads UCF frame numbers as 0-based, base=0). A video without an
  annotation line is all 0 when its label is class_names[0] (normal), else an error. Intervals
  ending past a video's end are clipped; their warnings are appended to `warnings` if given.
  """
  lengths = np.asarray(lengths_T, np.int64)
  if len(lengths) != len(entries):
    raise ValueError(f'{len(entries)} entries but {len(lengths)} lengths')
  masks = []
  for entry, t in zip(entries, lengths):
    n = int(t) * snippet_frames
    ann = annotations.get(entry.key)
    if ann is None:
      if label_index(entry, class_names) != 0:
        raise ValueError(f'{entry.where}: video {entry.key!r} is not {class_names[0]!r} but has '
                         'no annotation line')
      masks.append(np.zeros(n, np.uint8))
      continue
    mask, warned = frame_truth(ann.intervals, n, base, where=f'{ann.where} ({entry.key!r})')
    if warnings is not None:
      warnings.extend(warned)
    masks.append(mask)
  offsets = np.concatenate([[0], np.cumsum(lengths * snippet_frames)]).astype(np.int64)
  gt = np.concatenate(masks) if masks else np.zeros(0, np.uint8)
  return gt.astype(np.uint8), offsets


def split_gt(gt, lengths_T, snippet_frames: int = 16) -> list[np.ndarray]:
  """Per-video uint8 masks [T_v * snippet_frames] of a concatenated per-frame truth (a
  `gt-ucf.npy`), in list order."""
  gt = np.asarray(gt)
  sizes = np.asarray(lengths_T, np.int64) * snippet_frames
  if gt.ndim != 1 or len(gt) != sizes.sum():
    raise ValueError(
        f'the ground truth has {gt.size} frames but the videos cover sum(T * {snippet_frames}) = '
        f'{int(sizes.sum())}: it was built for other features or another list. UR-DMU-style '
        f'features use ceil(n / {snippet_frames}) snippets while their ground truth drops the '
        f'tail, so lengths differ by < {snippet_frames} frames a video; rebuild it with build_gt')
  return [m.astype(np.uint8) for m in np.split(gt, np.cumsum(sizes)[:-1])]


# ----------------------------------------------------------------------------- the source
def _header(where: str, path: str):
  """The mmapped array of a .npy (header parsed under the lock: not thread-safe in 3.11)."""
  try:
    with _NPY_HEADER_LOCK:
      return np.load(path, mmap_mode='r')
  except Exception as e:  # noqa: BLE001  (any unreadable file is a bad list line)
    raise ValueError(f'{where}: cannot read {path!r} as .npy: {e}'.replace('\n', ' ')) from None


def _entry_shape(entry: Entry) -> tuple[int, int, int]:
  """(T, C, F) of an entry, checked from its .npy headers."""
  shapes = []
  for p in entry.paths:
    a = _header(entry.where, p)
    per_crop = len(entry.paths) > 1
    if a.ndim not in ((2,) if per_crop else (2, 3)):
      want = '[T, F] (one crop a file)' if per_crop else '[T, F] or [T, crops, F]'
      raise ValueError(f'{entry.where}: {p!r} has shape {a.shape}; expected {want}')
    if not np.issubdtype(a.dtype, np.floating):
      raise ValueError(f'{entry.where}: {p!r} has dtype {a.dtype} (shape {a.shape}); expected '
                       'float features')
    if 0 in a.shape:
      raise ValueError(f'{entry.where}: {p!r} has shape {a.shape}: an empty axis (T = 0 '
                       'snippets, or no crops or features)')
    if shapes and a.shape != shapes[0]:
      raise ValueError(f'{entry.where}: crop files of video {entry.key!r} differ in shape: '
                       f'{entry.paths[0]!r} has shape {shapes[0]}, {p!r} {a.shape}')
    shapes.append(a.shape)
  t, f = shapes[0][0], shapes[0][-1]
  c = len(shapes) if len(shapes) > 1 else (shapes[0][1] if len(shapes[0]) == 3 else 1)
  return t, c, f


class PublishedFeatures:
  """grain random-access source of a published feature list (`read_list` entries).

  Examples: {'features': float32 [T, C, F] (C = 1 for [T, F] files; crop files stacked on axis
  1), 'label': int32, 'index': int32, and 'mask': uint8 [<= T * snippet_frames] when `masks` are
  given}. Training gives 'features' float32 [S, F]: one crop (rng-drawn, or the crops' mean)
  binned into `segments` MIL segments by `bins`; evaluation keeps every snippet and crop.
  Every file is checked from its .npy header at construction.
  """
  sequence_field = 'features'

  def __init__(self, entries, class_names, *, segments: int = 32, bins: str = 'rtfm',
               train_crop: str = 'random', masks=None, feature_dim: int | None = None,
               snippet_frames: int = 16, min_len: int = 1):
    if bins not in BINS:
      raise ValueError(f'bins must be one of {BINS}, got {bins!r}')
    if train_crop not in TRAIN_CROPS:
      raise ValueError(f'train_crop must be one of {TRAIN_CROPS}, got {train_crop!r}')
    if segments < 1 or snippet_frames < 1:
      raise ValueError(f'need segments >= 1 and snippet_frames >= 1, got {segments}, '
                       f'{snippet_frames}')
    self.entries = tuple(entries)
    if not self.entries:
      raise ValueError('PublishedFeatures needs at least one entry')
    self.class_names = tuple(class_names)
    self.segments, self.bins, self.train_crop = int(segments), bins, train_crop
    self.snippet_frames = int(snippet_frames)
    self.min_len = int(min_len)
    self._labels = np.asarray([label_index(e, self.class_names) for e in self.entries], np.int32)
    self._lengths, self.num_crops, self.feature_dim = self._check_files(feature_dim)
    self.masks = None if masks is None else self._check_masks(masks)

  def _check_files(self, feature_dim):
    feature_dim = feature_dim or None   # 0 (a config default) means any
    lengths, first = [], None
    for e in self.entries:
      t, c, f = _entry_shape(e)
      if first is None:
        first = (e, c, f)
        if feature_dim is not None and f != feature_dim:
          raise ValueError(f'{e.where}: {e.paths[0]!r} has {f} features a snippet; expected '
                           f'feature_dim={feature_dim}')
      elif f != first[2]:
        raise ValueError(f'{e.where}: {e.paths[0]!r} has {f} features a snippet; '
                         f'{first[0].where} ({first[0].paths[0]!r}) has {first[2]}')
      elif c != first[1]:
        raise ValueError(f'{e.where}: video {e.key!r} has {c} crops ({e.paths[0]!r}); '
                         f'{first[0].where} has {first[1]}: every video needs the same crops')
      lengths.append(t)
    return np.asarray(lengths, np.int64), first[1], first[2]

  def _check_masks(self, masks) -> list[np.ndarray]:
    if len(masks) != len(self.entries):
      raise ValueError(f'{len(masks)} masks for {len(self.entries)} videos')
    out = []
    for e, t, m in zip(self.entries, self._lengths, masks):
      m = np.asarray(m)
      if m.ndim != 1 or not 0 < len(m) <= t * self.snippet_frames:
        raise ValueError(f'{e.where}: mask of video {e.key!r} has shape {m.shape}; expected '
                         f'[n] with 0 < n <= T * {self.snippet_frames} = '
                         f'{t * self.snippet_frames}')
      out.append(m.astype(np.uint8))
    return out

  def __len__(self) -> int:
    return len(self.entries)

  def __repr__(self) -> str:
    return (f'PublishedFeatures({len(self)} videos, C={self.num_crops}, F={self.feature_dim}, '
            f'S={self.segments}, bins={self.bins!r})')

  @property
  def keys(self) -> list[str]:
    """Video keys in order (for vad_jax.data.splits.check_disjoint)."""
    return [e.key for e in self.entries]

  def labels(self) -> np.ndarray:
    return self._labels.copy()

  def lengths(self) -> np.ndarray:
    return self._lengths.copy()

  def select(self, indices) -> 'PublishedFeatures':
    """The source of the videos at `indices` (a validation carve), without re-reading headers."""
    idx = np.asarray(indices, np.int64)
    out = copy.copy(self)
    out.entries = tuple(self.entries[i] for i in idx)
    out._labels, out._lengths = self._labels[idx], self._lengths[idx]
    out.masks = None if self.masks is None else [self.masks[i] for i in idx]
    return out

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(index)
    arrays = [_header(self.entries[index].where, p) for p in self.entries[index].paths]
    if len(arrays) > 1:
      x = np.stack([np.asarray(a, np.float32) for a in arrays], axis=1)
    else:
      x = np.array(arrays[0], np.float32)   # a copy: nothing stays mapped
      x = x[:, None] if x.ndim == 2 else x
    out = {'features': x, 'label': self._labels[index],
           'index': np.int32(index)}
    if self.masks is not None:
      out['mask'] = self.masks[index]
    return out

  def train_transform(self, example: dict, rng: np.random.Generator) -> dict:
    """One crop (drawn with `rng`, or the mean of the crops), binned into S segments [S, F];
    drops 'mask' (frame truth never reaches a weakly supervised loss)."""
    x = example['features']
    x = x[:, rng.integers(x.shape[1])] if self.train_crop == 'random' else x.mean(axis=1)
    out = {k: v for k, v in example.items() if k != 'mask'}
    out['features'] = SEGMENT_RULES[self.bins](x, self.segments)
    return out

  def eval_transform(self, example: dict) -> dict:
    """Every snippet and crop [T, C, F] (the system averages over crops), padded to at least
    `min_len` snippets (one clip) by repeating the last; 'mask' keeps its true length."""
    x = example['features']
    if len(x) >= self.min_len:
      return example
    return {**example, 'features': np.concatenate([x, np.repeat(x[-1:], self.min_len - len(x), 0)])}
