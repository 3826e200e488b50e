"""Temporal annotation files of UCF-Crime and XD-Violence, and per-frame truth from them.

Every `Annotation` holds its intervals in ONE convention: source frame numbers, 1-based,
inclusive at both ends (the original MATLAB evaluation of UCF-Crime). `frame_truth` turns them
into a 0/1 mask over 0-based frames. Hand-written because no kept library reads these files.

Conventions of the public ground-truth builders (read before comparing numbers with a paper):
  UCF-Crime `Temporal_Anomaly_Annotation_for_Testing_Videos.txt`: MATLAB reads (s, e) as 1-based
    inclusive (our default, base=1). RTFM's `gt-ucf.npy` builder marks 0-based frames s..e
    inclusive (base=0 reproduces it); VadCLIP's marks 0-based [s, e) (one frame fewer).
  XD-Violence `annotations.txt`: starts are often 0, so the numbers are 0-based; every public
    builder (XDVioDet/RTFM/MGFN/VadCLIP) marks 0-based [s, e), end exclusive. `parse_xd` reads
    that by default (end='exclusive') and stores it as 1-based inclusive (s + 1, e).
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from vad_jax.classes import CLASS_NAMES

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.npy', '.mkv', '.mov')
_CROP_SUFFIX = re.compile(r'__(\d+)$')


@dataclasses.dataclass(frozen=True)
class Annotation:
  """One video's annotation line.

  name: video key (`video_key`); class_name: the UCF-Crime class, None for XD-Violence;
  intervals: ((start, end), ...) source frame numbers, 1-based inclusive; where: 'path:line'.
  """
  name: str
  class_name: str | None
  intervals: tuple[tuple[int, int], ...]
  where: str


def split_crop(name: str) -> tuple[str, int | None]:
  """(name without a trailing `__<k>` crop suffix, k or None); `name` has no extension."""
  m = _CROP_SUFFIX.search(name)
  return (name[:m.start()], int(m.group(1))) if m else (name, None)


def video_key(name: str) -> str:
  """The video's name without directories, a known extension (VIDEO_EXTENSIONS), a `__<k>` crop
  suffix or an `_i3d` suffix: 'Abuse/Abuse028_x264.mp4', '/x/Abuse028_x264_i3d.npy' and
  'Abuse028_x264__5.npy' all give 'Abuse028_x264'. Only known extensions are stripped because
  XD-Violence names hold dots ('Bad.Boys.1995__#01-11-55_...')."""
  base = name.replace('\\', '/').rstrip('/').rsplit('/', 1)[-1].strip()
  for ext in VIDEO_EXTENSIONS:
    if base.lower().endswith(ext):
      base = base[:-len(ext)]
      break
  base, _ = split_crop(base)
  if base.endswith('_i3d'):
    base = base[:-len('_i3d')]
  return base


def _lines(path: str):
  """(where 'path:line', whitespace-split tokens) of every non-blank line."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: annotation file not found')
  with open(path, encoding='utf-8-sig') as f:
    for line_no, line in enumerate(f, start=1):
      tokens = line.split()
      if tokens:
        yield f'{path}:{line_no}', tokens


def _ints(where: str, tokens: list[str], text: str) -> list[int]:
  try:
    return [int(t) for t in tokens]
  except ValueError:
    raise ValueError(f'{where}: frame numbers must be integers: {text!r}') from None


def _pairs(where: str, frames: list[int], text: str, first: int) -> list[tuple[int, int]]:
  """(start, end) pairs as written, without the (-1, -1) 'no event' ones; `first` is the lowest
  valid frame number (1 for 1-based files, 0 for 0-based)."""
  out = []
  for s, e in zip(frames[0::2], frames[1::2]):
    if (s, e) == (-1, -1):
      continue
    if s == -1 or e == -1:
      raise ValueError(f'{where}: interval ({s}, {e}) has one -1: both or neither: {text!r}')
    if s < first or e < first:
      raise ValueError(f'{where}: interval ({s}, {e}) has a frame number below {first}: '
                       f'{text!r}')
    if s > e:
      raise ValueError(f'{where}: interval ({s}, {e}) starts after it ends: {text!r}')
    out.append((s, e))
  return out


def _add(out: dict, ann: Annotation, text: str) -> None:
  if ann.name in out:
    raise ValueError(f'{ann.where}: video {ann.name!r} is annotated twice: here and at '
                     f'{out[ann.name].where}: {text!r}')
  out[ann.name] = ann


def parse_ucf_temporal(path: str, class_names=CLASS_NAMES) -> dict[str, Annotation]:
  """{video key: Annotation} of `Temporal_Anomaly_Annotation_for_Testing_Videos.txt`.

  A line is `name class s1 e1 [s2 e2 ...]` (any whitespace; `.mp4` optional; copies add pairs);
  (-1, -1) pairs mean no event. class_names[0] is the normal class: its lines have no interval.
  """
  names = tuple(class_names)
  out: dict[str, Annotation] = {}
  for where, tokens in _lines(path):
    text = ' '.join(tokens)
    if len(tokens) < 4 or len(tokens) % 2:
      raise ValueError(f'{where}: expected `name class start end [start end ...]` (an even '
                       f'number >= 2 of frame columns), got {len(tokens)} columns: {text!r}')
    name, cls = tokens[0], tokens[1]
    if cls not in names:
      raise ValueError(f'{where}: unknown class {cls!r}; known: {list(names)}: {text!r}')
    intervals = _pairs(where, _ints(where, tokens[2:], text), text, first=1)
    if cls == names[0] and intervals:
      raise ValueError(f'{where}: a {cls!r} video has anomalous intervals {intervals}: {text!r}')
    _add(out, Annotation(video_key(name), cls, tuple(intervals), where), text)
  return out


def parse_xd(path: str, end: str = 'exclusive') -> dict[str, Annotation]:
  """{video key: Annotation} of XD-Violence's `annotations.txt` (`name s1 e1 [s2 e2 ...]`, 0-based
  frame numbers; only violent videos have lines). end='exclusive' reads (s, e) as frames
  [s, e), as every public gt builder does; 'inclusive' as [s, e]. Stored 1-based inclusive:
  (s + 1, e) or (s + 1, e + 1), so `frame_truth(..., base=1)` serves both datasets."""
  if end not in ('exclusive', 'inclusive'):
    raise ValueError(f"end must be 'exclusive' or 'inclusive', got {end!r}")
  out: dict[str, Annotation] = {}
  for where, tokens in _lines(path):
    text = ' '.join(tokens)
    if len(tokens) < 3 or len(tokens) % 2 == 0:
      raise ValueError(f'{where}: expected `name start end [start end ...]` (an even number >= 2 '
                       f'of frame columns), got {len(tokens)} columns: {text!r}')
    intervals = []
    for s, e in _pairs(where, _ints(where, tokens[1:], text), text, first=0):
      if end == 'exclusive' and e == s:
        raise ValueError(f'{where}: interval ({s}, {e}) is empty with an exclusive end: {text!r}')
      intervals.append((s + 1, e if end == 'exclusive' else e + 1))
    _add(out, Annotation(video_key(tokens[0]), None, tuple(intervals), where), text)
  return out


def frame_truth(intervals, num_frames: int, base: int = 1,
                where: str = '') -> tuple[np.ndarray, list[str]]:
  """(uint8 [num_frames] 0/1 mask, warnings) of a video's intervals.

  An interval (s, e) in `base`-based inclusive numbering covers the 0-based frames
  [s - base, e - base]. One starting at or past the video's end is an error (the annotation is
  not of this video, or the video is cut); one ending past it is clipped, with a warning.
  """
  if num_frames < 0:
    raise ValueError(f'{where}: num_frames must be >= 0, got {num_frames}')
  mask = np.zeros(num_frames, np.uint8)
  warnings = []
  for s, e in intervals:
    lo, hi = s - base, e - base
    if lo < 0 or hi < lo:
      raise ValueError(f'{where}: interval ({s}, {e}) is not a valid {base}-based interval')
    if lo >= num_frames:
      raise ValueError(f'{where}: interval ({s}, {e}) starts at or after the end of the video '
                       f'({num_frames} frames)')
    if hi >= num_frames:
      warnings.append(f'{where}: interval ({s}, {e}) ends after the end of the video '
                      f'({num_frames} frames): clipped to frame {num_frames - 1 + base}')
      hi = num_frames - 1
    mask[lo:hi + 1] = 1
  return mask, warnings
