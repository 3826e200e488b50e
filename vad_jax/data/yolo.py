"""YOLO label trees (the ultralytics layout) as a detection source.

  ROOT/images/<split>/**/<name>.{jpg,jpeg,png,bmp}
  ROOT/labels/<split>/**/<name>.txt      one object a line: `class cx cy w h`, normalised to [0, 1]

Split folders: 'train'; 'val' or 'validation'; 'test'. An image without a label file, or with an
empty one, has no objects. `YoloTree(root, split, height, width)` serves one split as

  image      uint8 [height, width, 3]   decoded with PIL (EXIF orientation applied), RGB, plainly
                                        resized (aspect ratio not kept), so normalised boxes are
                                        unchanged
  boxes      float32 [max_boxes, 4]     (x0, y0, x1, y1) in [0, 1], valid rows first, rest zero
  box_valid  bool [max_boxes]
  label      int32                      the number of objects
  index      int32                      position in the split

Only the classes in `keep_classes` are kept (all of them merged into the one detection target:
the example carries no per-box class), the others are dropped and counted. Every label file is
parsed at construction: the bad lines of all files are reported together in one `LabelError`, so
one pass fixes them all. With `group_pattern` (a regex matched on the file stem: group 1, or the
whole match, names the video, e.g. r'^(.*)_\\d+$' for 'Abuse001_x264_10') the source also has
`video_ids()`, which the split-leak check of `sources.make_splits` runs on; without it the
attribute does not exist (frames of unknown origin cannot be checked).

`source_from_config(config, split)` builds a split from `config.data`; without a validation folder
the validation split is carved from train (`splits.carve_validation`).
"""

from __future__ import annotations

import copy
import inspect
import math
import os
import re
import warnings

import numpy as np

from vad_jax.data.source import DataError

__all__ = ['LabelError', 'parse_label_file', 'YoloTree', 'GroupedYoloTree', 'source_from_config']

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp')
SPLIT_FOLDERS = {'train': ('train',), 'validation': ('val', 'validation'),
                 'val': ('val', 'validation'), 'test': ('test',)}
TOLERANCE = 1e-3      # how far (normalised) a box may reach past the image edge: beyond, an error
MAX_LISTED = 50       # bad lines listed in one LabelError


class LabelError(DataError):
  """Bad YOLO label lines; `errors` holds one 'path:lineno: reason: 'line'' string each."""

  def __init__(self, errors: list[str], total: int | None = None):
    self.errors = list(errors)
    total = len(self.errors) if total is None else total
    shown = self.errors[:MAX_LISTED]
    more = f'\n... and {total - len(shown)} more' if total > len(shown) else ''
    super().__init__(f'{total} bad YOLO label line(s) (expected `class cx cy w h`, class a '
                     f'0-based integer, cx cy w h in [0, 1]):\n' + '\n'.join(shown) + more)


def _line_problems(cols: list[str]) -> list[str]:
  """The reasons one split line is bad (empty when it is fine)."""
  if len(cols) != 5:
    hint = ' (segment polygons are not supported)' if len(cols) > 5 and len(cols) % 2 else ''
    return [f'expected 5 columns (class cx cy w h), got {len(cols)}{hint}']
  try:
    v = [float(c) for c in cols]
  except ValueError:
    return ['non-numeric value']
  if not all(math.isfinite(x) for x in v):
    return ['non-finite value']
  cls, cx, cy, w, h = v
  problems = []
  if cls != int(cls) or cls < 0:
    problems.append(f'class id must be a non-negative integer, got {cols[0]}')
  if not all(0 <= x <= 1 for x in (cx, cy, w, h)):
    problems.append('cx, cy, w, h must be in [0, 1]')
  if w <= 0 or h <= 0:
    problems.append('w and h must be > 0')
  elif (cx - w / 2 < -TOLERANCE or cx + w / 2 > 1 + TOLERANCE or cy - h / 2 < -TOLERANCE
        or cy + h / 2 > 1 + TOLERANCE):
    problems.append(f'box extends beyond the image (by more than {TOLERANCE})')
  return problems


def _parse(path: str, keep_classes) -> tuple[np.ndarray, int, list[str]]:
  """(boxes float32 [n, 4] x0 y0 x1 y1 clipped to [0, 1], dropped count, error strings)."""
  keep = None if keep_classes is None else frozenset(int(c) for c in keep_classes)
  boxes, dropped, errors = [], 0, []
  try:
    with open(path, encoding='utf-8-sig') as f:
      text = f.read()
  except UnicodeDecodeError as e:
    return np.zeros((0, 4), np.float32), 0, [f'{path}: not UTF-8 text: {e}']
  for lineno, raw in enumerate(text.split('\n'), 1):
    line = raw.strip()
    if not line:
      continue
    cols = line.split()
    problems = _line_problems(cols)
    if problems:
      errors.append(f'{path}:{lineno}: {"; ".join(problems)}: {line!r}')
      continue
    cls, cx, cy, w, h = (float(c) for c in cols)
    if keep is not None and int(cls) not in keep:
      dropped += 1
      continue
    boxes.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
  out = np.clip(np.asarray(boxes, np.float32).reshape(-1, 4), 0, 1)
  return out, dropped, errors


def parse_label_file(path: str, keep_classes=(0,)) -> tuple[np.ndarray, int]:
  """(boxes float32 [n, 4] normalised (x0, y0, x1, y1), dropped) of one YOLO label file.

  Lines are `class cx cy w h`; blank lines and surrounding whitespace are ignored; boxes within
  TOLERANCE of the image are clipped to it. Objects whose class is not in `keep_classes` (None:
  keep every class) are dropped and counted. Raises LabelError listing every bad line as
  `path:lineno: reason: 'line'`.
  """
  boxes, dropped, errors = _parse(os.fspath(path), keep_classes)
  if errors:
    raise LabelError(errors)
  return boxes, dropped


def split_dir(root: str, kind: str, split: str) -> str:
  """ROOT/<kind>/<folder> of `split` ('validation' -> 'val' or 'validation'); FileNotFoundError
  naming the expected path(s) when none exists."""
  names = SPLIT_FOLDERS.get(split, (split,))
  for name in names:
    path = os.path.join(root, kind, name)
    if os.path.isdir(path):
      return path
  expected = ' or '.join(os.path.join(root, kind, n) for n in names)
  raise FileNotFoundError(f'no {kind} folder for the {split} split of the YOLO tree {root}: '
                          f'expected {expected} (layout: ROOT/images/<split>/*.jpg with '
                          f'ROOT/labels/<split>/*.txt)')


def has_split(root: str, split: str) -> bool:
  """Whether ROOT/images has a folder for `split`."""
  return any(os.path.isdir(os.path.join(root, 'images', n))
             for n in SPLIT_FOLDERS.get(split, (split,)))


def _walk(top: str, exts) -> list[str]:
  """Sorted relative posix paths of the files under `top` whose lower-cased suffix is in exts."""
  found = []
  for dirpath, dirnames, filenames in os.walk(top):
    dirnames.sort()
    rel = os.path.relpath(dirpath, top)
    for name in filenames:
      if os.path.splitext(name)[1].lower() in exts:
        found.append(name if rel == '.' else os.path.join(rel, name).replace(os.sep, '/'))
  return sorted(found)


def _listing(names: list[str], limit: int = 5) -> str:
  more = f' and {len(names) - limit} more' if len(names) > limit else ''
  return ', '.join(names[:limit]) + more


class YoloTree:
  """One split of a YOLO label tree under the detection Source contract (module docstring).

  root: the tree (ROOT/images, ROOT/labels); split: 'train', 'validation' (folder 'val' or
  'validation') or 'test'; height, width: the served image size; max_boxes: P, the boxes array
  width (an image with more kept objects is refused); keep_classes: class ids kept (None: all);
  class_names: the object vocabulary; group_pattern: see GroupedYoloTree (a non-empty pattern
  makes the instance one). `augment`: the training transform (e.g. box_augment.make_augment),
  None by default.
  """
  sequence_field = 'image'
  augment = None

  def __new__(cls, *args, **kwargs):
    if cls is YoloTree and (args or kwargs):
      bound = inspect.signature(YoloTree.__init__).bind(None, *args, **kwargs)
      if bound.arguments.get('group_pattern'):
        cls = GroupedYoloTree
    return super().__new__(cls)

  def __init__(self, root: str, split: str, height: int, width: int, max_boxes: int = 50,
               keep_classes=(0,), class_names=('person',), group_pattern: str = ''):
    self.root, self.split = os.fspath(root), split
    self.height, self.width, self.max_boxes = int(height), int(width), int(max_boxes)
    self.keep_classes = None if keep_classes is None else tuple(int(c) for c in keep_classes)
    self.class_names = tuple(class_names)
    self.group_pattern = group_pattern or ''
    if self.max_boxes < 1:
      raise ValueError(f'max_boxes must be >= 1, got {max_boxes}')
    if self.keep_classes is not None and (not self.keep_classes or min(self.keep_classes) < 0):
      raise ValueError(f'keep_classes must be non-negative class ids (or None: all), got '
                       f'{keep_classes!r}')
    if not self.class_names:
      raise ValueError('class_names is empty: name the detected object class(es)')
    self.image_dir = split_dir(self.root, 'images', split)
    self.label_dir = split_dir(self.root, 'labels', split)
    self.files = tuple(_walk(self.image_dir, IMAGE_EXTS))
    if not self.files:
      raise ValueError(f'no images ({", ".join(IMAGE_EXTS)}) under {self.image_dir}')
    stems = {}
    for f in self.files:
      stem = os.path.splitext(f)[0]
      if stem in stems:
        raise ValueError(f'{stems[stem]} and {f} under {self.image_dir} share the label file '
                         f'{stem}.txt: rename one')
      stems[stem] = f
    self._parse_labels(stems)
    self._init_groups()

  def _parse_labels(self, stems: dict) -> None:
    boxes, errors, dropped, too_many = [], [], 0, []
    for f in self.files:
      path = os.path.join(self.label_dir, os.path.splitext(f)[0] + '.txt')
      if os.path.isfile(path):
        b, d, e = _parse(path, self.keep_classes)
        dropped += d
        errors += e
        if len(b) > self.max_boxes:
          too_many.append((len(b), path))
      else:
        b = np.zeros((0, 4), np.float32)
      boxes.append(b)
    if errors:
      raise LabelError(errors)
    if too_many:
      most = max(n for n, _ in too_many)
      raise ValueError(
          f'{len(too_many)} image(s) have more than max_boxes={self.max_boxes} objects (most: '
          f'{most}): {_listing([f"{p} ({n})" for n, p in too_many])}; raise data.max_boxes to at '
          f'least {most}')
    orphans = [t for t in _walk(self.label_dir, ('.txt',)) if t[:-4] not in stems]
    if orphans:
      warnings.warn(f'{len(orphans)} label file(s) under {self.label_dir} have no image in '
                    f'{self.image_dir} (ignored): {_listing(orphans)}', stacklevel=3)
    self.dropped = dropped
    self._offsets = np.concatenate([[0], np.cumsum([len(b) for b in boxes])]).astype(np.int64)
    self._boxes = np.concatenate(boxes).astype(np.float32).reshape(-1, 4)

  def _init_groups(self) -> None:
    pass

  def __len__(self) -> int:
    return len(self.files)

  def __repr__(self) -> str:
    return (f'{type(self).__name__}({self.root!r}, split={self.split!r}, images={len(self)}, '
            f'size={self.height}x{self.width}, max_boxes={self.max_boxes}, '
            f'keep_classes={self.keep_classes})')

  def subset(self, indices, split: str | None = None) -> YoloTree:
    """A copy holding only the images at `indices` (in that order; 'index' counts within it),
    named `split` (default: this one's); labels are not parsed again."""
    idx = np.asarray(indices, np.int64).reshape(-1)
    sub = copy.copy(self)
    sub.files = tuple(self.files[i] for i in idx)
    counts = np.diff(self._offsets)[idx]
    sub._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    sub._boxes = (np.concatenate([self._boxes[self._offsets[i]:self._offsets[i + 1]] for i in idx])
                  .reshape(-1, 4).astype(np.float32) if len(idx) else np.zeros((0, 4), np.float32))
    sub.split = self.split if split is None else split
    sub.augment = None
    return sub

  # -- without decoding ---------------------------------------------------------------------------
  def image_path(self, index: int) -> str:
    return os.path.join(self.image_dir, self.files[index])

  def boxes(self, index: int) -> np.ndarray:
    """float32 [n, 4]: the kept objects of image `index`, normalised (x0, y0, x1, y1)."""
    return self._boxes[self._offsets[index]:self._offsets[index + 1]]

  def labels(self) -> np.ndarray:
    """int32 [len]: the number of kept objects of every image."""
    return np.diff(self._offsets).astype(np.int32)

  def class_counts(self) -> np.ndarray:
    """int64 [len(class_names)]: the kept objects of the split (one detection target: all
    kept classes count as the first name)."""
    out = np.zeros(len(self.class_names), np.int64)
    out[0] = int(self.labels().sum())
    return out

  def lengths(self) -> np.ndarray:
    return np.ones(len(self), np.int64)

  # -- pixels -------------------------------------------------------------------------------------
  def load_image(self, index: int) -> np.ndarray:
    """uint8 [height, width, 3]: image `index` decoded, EXIF-oriented, RGB, resized."""
    from PIL import Image, ImageOps
    path = self.image_path(index)
    try:
      with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert('RGB')
        if im.size != (self.width, self.height):
          im = im.resize((self.width, self.height), Image.BILINEAR)
        return np.asarray(im, np.uint8).copy()
    except OSError as e:
      raise OSError(f'cannot decode image {path}: {e}') from e

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(index)
    b = self.boxes(index)
    boxes = np.zeros((self.max_boxes, 4), np.float32)
    boxes[:len(b)] = b
    return {'image': self.load_image(index), 'boxes': boxes,
            'box_valid': np.arange(self.max_boxes) < len(b), 'label': np.int32(len(b)),
            'index': np.int32(index)}

  def train_transform(self, example: dict, rng: np.random.Generator) -> dict:
    return self.augment(example, rng) if self.augment else example

  def eval_transform(self, example: dict) -> dict:
    return example


class GroupedYoloTree(YoloTree):
  """A YoloTree whose images are frames of videos: `re.match(group_pattern, stem)` (stem: the
  file name without its extension) names the video, group 1 if the pattern has a group, else the
  whole match. ValueError naming the files the pattern does not match."""

  def _init_groups(self) -> None:
    if not self.group_pattern:
      raise ValueError('GroupedYoloTree needs a non-empty group_pattern')
    pattern = re.compile(self.group_pattern)
    groups, bad = [], []
    for f in self.files:
      stem = os.path.splitext(os.path.basename(f))[0]
      m = pattern.match(stem)
      if m is None:
        bad.append(f)
        continue
      groups.append(m.group(1) if pattern.groups else m.group(0))
    if bad:
      raise ValueError(f'data.group_pattern={self.group_pattern!r} does not match the stem of '
                       f'{len(bad)} image(s) under {self.image_dir}: {_listing(bad)}')
    self.groups = tuple(groups)

  def subset(self, indices, split: str | None = None) -> GroupedYoloTree:
    sub = super().subset(indices, split)
    sub.groups = tuple(self.groups[int(i)] for i in np.asarray(indices, np.int64).reshape(-1))
    return sub

  def video_ids(self) -> list[str]:
    """One name an example: the video (group) its frame belongs to."""
    return list(self.groups)


def _get(d, key: str, default):
  return d.get(key, default) if hasattr(d, 'get') else getattr(d, key, default)


def source_from_config(config, split: str) -> YoloTree:
  """The YoloTree of `split` ('train', 'validation', 'test') from config.data: data_dir (the
  tree's ROOT, required), height, width, max_boxes, keep_classes (() or None: every class),
  class_names (object names), group_pattern, box_augment (a `box_augment.make_augment` name,
  train split only; read from `augment` when the config has no box_augment key), val_fraction,
  split_seed; the optional ones default to 50, (0,), ('person',), '', 'none', 0.1 and 0.

  Without ROOT/images/val (or validation) the validation split is carved from train by
  `splits.carve_validation(labels, val_fraction, split_seed)`, stratified by whether an image
  has any object: over images, or, with group_pattern, over videos (a video counts as having
  objects when any of its frames has), so all frames of a video land on one side.
  """
  from vad_jax.data.box_augment import make_augment
  from vad_jax.data.splits import carve_validation
  d = config.data
  if split not in ('train', 'validation', 'test'):
    raise ValueError(f"unknown split {split!r}; expected 'train', 'validation' or 'test'")
  root = _get(d, 'data_dir', '')
  if not root:
    raise ValueError('config.data.data_dir is empty: give the root of the YOLO tree '
                     '(ROOT/images/<split>, ROOT/labels/<split>)')
  keep = _get(d, 'keep_classes', (0,))
  kw = dict(height=d.height, width=d.width, max_boxes=_get(d, 'max_boxes', 50),
            keep_classes=None if keep is None or not len(keep) else tuple(keep),
            class_names=tuple(_get(d, 'class_names', ('person',))),
            group_pattern=_get(d, 'group_pattern', ''))
  if split == 'test' or (split == 'validation' and has_split(root, 'validation')):
    return YoloTree(root, split, **kw)
  src = YoloTree(root, 'train', **kw)
  if split == 'train' and has_split(root, 'validation'):
    keep_idx = np.arange(len(src))
  else:
    fraction, seed = float(_get(d, 'val_fraction', 0.1)), int(_get(d, 'split_seed', 0))
    has_objects = src.labels() > 0
    if src.group_pattern:
      names, group_of = np.unique(np.asarray(src.groups), return_inverse=True)
      group_label = np.zeros(len(names), np.int64)
      np.maximum.at(group_label, group_of, has_objects.astype(np.int64))
      train_g, val_g = carve_validation(group_label, fraction, seed)
      keep_idx = np.flatnonzero(np.isin(group_of, train_g if split == 'train' else val_g))
    else:
      train_i, val_i = carve_validation(has_objects.astype(np.int64), fraction, seed)
      keep_idx = train_i if split == 'train' else val_i
    if not len(keep_idx):
      raise ValueError(f'data.val_fraction={fraction} leaves the {split} split of {root} empty '
                       f'(no images/val folder, so validation is carved from train)')
    src = src.subset(keep_idx, split)
  if split == 'train':
    name = _get(d, 'box_augment', None)
    src.augment = make_augment((_get(d, 'augment', '') if name is None else name) or 'none')
  return src
