"""Find a dataset's files in the folder a user extracted it to, whatever the archive's nesting:
split lists, annotation files and videos are found BY NAME at any depth. No decoding here:
structure errors (a listed video missing, a bad annotation line, a video in two splits,
duplicate names) stop before any long work, naming the file and line.

Each function returns `RawVideo` items sorted by (split, name); validation is carved from the
training videos (vad_jax.data.splits.carve_validation: seeded, per class), because none of
these datasets has a validation split and checkpoints must not be chosen on the test split.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re

from absl import logging

from vad_jax.classes import CLASS_NAMES
from vad_jax.data import annotations as ann
from vad_jax.data.splits import SplitLeak, carve_validation, check_disjoint

VIOLENCE = ('NonViolent', 'Violent')


@dataclasses.dataclass(frozen=True)
class RawVideo:
  """One video to prepare. kind 'video': paths = (the file,); 'frames': the image files in
  order, frame_numbers = each one's source frame (0-based). intervals: per-frame truth as
  source-frame intervals (1-based inclusive); None = weakly labelled (no frame truth)."""
  name: str
  split: str
  label: str
  kind: str
  paths: tuple[str, ...]
  frame_numbers: tuple[int, ...] | None
  intervals: tuple[tuple[int, int], ...] | None
  where: str


def _walk(raw_dir: str):
  for folder, _, files in os.walk(raw_dir, followlinks=True):
    for f in files:
      yield folder, f


def index_files(raw_dir: str, suffixes) -> dict[str, str]:
  """{basename: path} of every file under raw_dir ending in one of `suffixes` (any case);
  the same basename twice is an error naming both."""
  out = {}
  for folder, f in _walk(raw_dir):
    if f.lower().endswith(tuple(suffixes)):
      path = os.path.join(folder, f)
      if f in out:
        raise ValueError(f'duplicate video name {f!r}: {out[f]} and {path}')
      out[f] = path
  return out


def find_one(raw_dir: str, pattern: str, required: bool = True) -> str | None:
  """The one file under raw_dir whose name matches the regex `pattern`."""
  hits = sorted(os.path.join(d, f) for d, f in _walk(raw_dir) if re.fullmatch(pattern, f))
  if len(hits) > 1:
    raise ValueError(f'{len(hits)} files match {pattern!r} under {raw_dir}: {hits}; keep one')
  if not hits and required:
    raise FileNotFoundError(f'no file matching {pattern!r} under {raw_dir}')
  return hits[0] if hits else None


def ucf_class(name: str, where: str) -> str:
  """UCF-Crime class from a video name: Normal_Videos... -> Normal, Abuse028_x264 -> Abuse."""
  if name.lower().startswith('normal'):
    return 'Normal'
  for c in sorted(CLASS_NAMES[1:], key=len, reverse=True):
    if name.startswith(c):
      return c
  raise ValueError(f'{where}: cannot tell the class of {name!r} (names start with one of '
                   f'{list(CLASS_NAMES[1:])} or Normal)')


def _carve(items: list[RawVideo], val_fraction: float, seed: int, classes) -> list[RawVideo]:
  train = [it for it in items if it.split == 'train']
  labels = [classes.index(it.label) for it in train]
  _, val = carve_validation(labels, val_fraction, seed)
  val = set(val.tolist())
  carved = [dataclasses.replace(it, split='validation') if i in val else it
            for i, it in enumerate(train)]
  return carved + [it for it in items if it.split != 'train']


def _finish(items: list[RawVideo]) -> list[RawVideo]:
  items = sorted(items, key=lambda it: (it.split, it.name))
  by_split = collections.defaultdict(list)
  for it in items:
    by_split[it.split].append(it.name)
  check_disjoint(by_split)
  return items


def ucf_crime(raw_dir: str, val_fraction: float = 0.1, seed: int = 0) -> list[RawVideo]:
  """UCF-Crime: Anomaly_Train.txt (weak labels), the temporal annotation file (test, with
  frame truth), Anomaly_Test.txt (optional, checked against it), the .mp4 files."""
  train_list = find_one(raw_dir, r'Anomaly_Train\.txt')
  notes_path = find_one(raw_dir, r'Temporal_Anomaly_Annotation.*\.txt')
  test_list = find_one(raw_dir, r'Anomaly_Test\.txt', required=False)
  videos = index_files(raw_dir, ('.mp4',))
  by_key = {ann.video_key(f): p for f, p in videos.items()}
  notes = ann.parse_ucf_temporal(notes_path)
  items = []
  with open(train_list, encoding='utf-8') as f:
    for i, line in enumerate(f, 1):
      line = line.strip()
      if not line:
        continue
      where = f'{train_list}:{i}'
      key = ann.video_key(line)
      if key not in by_key:
        raise FileNotFoundError(f'{where}: video {line!r} not found under {raw_dir}')
      if key in notes:
        raise SplitLeak(f'{where}: video {key!r} is in the training list and in the test '
                        f'annotation {notes[key].where}')
      items.append(RawVideo(key, 'train', ucf_class(key, where), 'video', (by_key[key],),
                            None, None, where))
  for key, note in notes.items():
    if key not in by_key:
      raise FileNotFoundError(f'{note.where}: video {key!r} not found under {raw_dir}')
    items.append(RawVideo(key, 'test', note.class_name, 'video', (by_key[key],), None,
                          tuple(note.intervals), note.where))
  if test_list:
    with open(test_list, encoding='utf-8') as f:
      listed = {ann.video_key(l.strip()): i for i, l in enumerate(f, 1) if l.strip()}
    for key, line in listed.items():
      if key not in notes:
        raise ValueError(f'{test_list}:{line}: {key!r} has no line in {notes_path}')
    for key, note in notes.items():
      if key not in listed:
        raise ValueError(f'{note.where}: {key!r} is not in {test_list}')
  return _finish(_carve(items, val_fraction, seed, CLASS_NAMES))


_KAGGLE = re.compile(r'(.+)_(\d+)\.png', re.I)
_KAGGLE_CLASSES = {**{c.lower(): c for c in CLASS_NAMES}, 'normalvideos': 'Normal'}


def ucf_crime_frames(raw_dir: str, val_fraction: float = 0.1, seed: int = 0) -> list[RawVideo]:
  """The Kaggle UCF-Crime frames: Train|Test/<Class>/<Video>_x264_<n>.png, grouped into videos
  by name and ordered by n (numerically). A video in Train and Test is refused (SplitLeak).
  Test truth from a Temporal_Anomaly_Annotation*.txt under raw_dir when there is one (n is
  the source frame, 0-based), else none; an annotation without a line for an anomalous test
  video gives that video no truth (None, logged), a normal one an all-normal truth ()."""
  groups: dict[tuple[str, str], dict] = {}
  odd = []
  for folder, f in _walk(raw_dir):
    parts = [p.lower() for p in os.path.normpath(folder).split(os.sep)]
    if len(parts) < 2 or parts[-2] not in ('train', 'test'):
      continue
    m = _KAGGLE.fullmatch(f)
    if not m:
      odd.append(f)
      continue
    split = parts[-2]
    cls = _KAGGLE_CLASSES.get(os.path.basename(folder).lower().replace('_', ''))
    if cls is None:
      raise ValueError(f'{folder}: unknown class folder {os.path.basename(folder)!r}; known: '
                       f'{list(CLASS_NAMES[1:])} and NormalVideos (any case)')
    g = groups.setdefault((split, m.group(1)), {'cls': cls, 'frames': [], 'folder': folder})
    if g['cls'] != cls:
      raise ValueError(f'video {m.group(1)!r} has frames in {g["folder"]} and {folder}')
    g['frames'].append((int(m.group(2)), os.path.join(folder, f)))
  if odd:
    logging.warning('%d files under Train/Test do not match <Video>_<n>.png and were ignored, '
                    'e.g. %s', len(odd), odd[:3])
  names = collections.defaultdict(list)
  for split, name in groups:
    names[name].append(split)
  for name, splits in names.items():
    if len(splits) > 1:
      raise SplitLeak(f'video {name!r} has frames in both Train and Test: frames of one video '
                      'may never be in two splits')
  notes_path = find_one(raw_dir, r'Temporal_Anomaly_Annotation.*\.txt', required=False)
  notes = ann.parse_ucf_temporal(notes_path) if notes_path else None
  items, unannotated = [], []
  for (split, name), g in sorted(groups.items()):
    frames = sorted(g['frames'])
    intervals = None
    if split == 'test' and notes is not None:
      key = ann.video_key(name)
      if key in notes:
        intervals = tuple(notes[key].intervals)
      elif g['cls'] == 'Normal':
        intervals = ()
      else:     # an anomalous video without a line has unknown truth, not an all-normal one
        unannotated.append(name)
    items.append(RawVideo(name, split, g['cls'], 'frames', tuple(p for _, p in frames),
                          tuple(n for n, _ in frames), intervals, g['folder']))
  if unannotated:
    logging.warning('%d anomalous test videos have no line in %s (no frame truth for them), '
                    'e.g. %s', len(unannotated), notes_path, unannotated[:3])
  return _finish(_carve(items, val_fraction, seed, CLASS_NAMES))


def rwf2000(raw_dir: str, val_fraction: float = 0.1, seed: int = 0) -> list[RawVideo]:
  """RWF-2000: train|val/Fight|NonFight/*.avi. The official val is our test split; validation
  is carved from train."""
  items = []
  for folder, f in _walk(raw_dir):
    if not f.lower().endswith('.avi'):
      continue
    parts = [p.lower() for p in os.path.normpath(folder).split(os.sep)]
    if len(parts) < 2 or parts[-1] not in ('fight', 'nonfight') or parts[-2] not in ('train',
                                                                                        'val'):
      continue
    split = 'train' if parts[-2] == 'train' else 'test'
    label = 'Violent' if parts[-1] == 'fight' else 'NonViolent'
    path = os.path.join(folder, f)
    items.append(RawVideo(os.path.splitext(f)[0], split, label, 'video', (path,), None, None,
                          path))
  seen = {}
  for it in items:
    if (it.split, it.name) in seen:
      raise ValueError(f'duplicate video name {it.name!r}: {seen[(it.split, it.name)]} and '
                       f'{it.paths[0]}')
    seen[(it.split, it.name)] = it.paths[0]
  return _finish(_carve(items, val_fraction, seed, VIOLENCE))


DATASETS = {'ucf_crime': (ucf_crime, CLASS_NAMES), 'ucf_crime_frames': (ucf_crime_frames,
                                                                         CLASS_NAMES),
            'rwf2000': (rwf2000, VIOLENCE)}
