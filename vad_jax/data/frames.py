"""Single frames of the built-in synthetic videos (seed 002 classifies frames, not clips).

`SyntheticFrames(spec, split, K)` takes K frames of every video of `SyntheticVideos(spec,
split)`, evenly spaced: frame j (0 <= j < K) of a T-frame video is the centre of the j-th of K
equal segments, ``(2j + 1) * T // (2K)`` (T = 8, K = 4 -> 1, 3, 5, 7; K = T -> every frame).
Example i is frame i % K of video i // K:

  image  uint8 [H, W, 3]   label int32   index int32 (= i)   video int32   frame int32 (in 0..T-1)

Labels: ``label_mode='window'``: the video's class on frames inside its annotated event window
(mask == 1), Normal (0) elsewhere; ``'video'``: the video's class on every frame (how the Kaggle
UCF-Crime frames are labelled: noisy). `labels()` renders nothing: `synthetic.render` draws the
label, then the window length, then its start, first from the video's rng, so `event_window`
replays those three draws.

The pixels of a split are rendered on first access, once, into one uint8 array
[len, H, W, 3] (thread-safe: grain reads with threads), in a thread pool: rendering is numpy
on whole videos and partly releases the GIL (64x64 on 2 cores: 64-frame videos ~5100 frames/s
sequential, ~7400 with 2 threads; 16-frame videos ~2500 either way, per-video overhead). Every
video is rendered whole (T frames) to keep K: prefer short videos. Pickling drops the pixels
(and the lock); an unpickled copy renders again when read.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from vad_jax.classes import CLASS_NAMES, NORMAL
from vad_jax.data import synthetic

__all__ = ['SyntheticFrames', 'frame_indices', 'event_window']

LABEL_MODES = ('window', 'video')


def frame_indices(num_frames: int, k: int) -> np.ndarray:
  """int64 [k]: the centres of k equal segments of [0, num_frames), (2j + 1) * T // (2k)."""
  if not 1 <= k <= num_frames:
    raise ValueError(f'frames_per_video must be in [1, num_frames={num_frames}], got {k}')
  return (2 * np.arange(k) + 1) * num_frames // (2 * k)


def event_window(spec: synthetic.SyntheticSpec, rng, cdf) -> tuple[int, int, int]:
  """(label, start, length) of a video from a fresh video rng, without rendering: the first three
  draws of `synthetic.render` (its mask is 1 on [start, start + length) unless Normal)."""
  n = spec.num_frames
  label = synthetic._label(rng, cdf)  # noqa: SLF001 -- the same draw as render's
  lo_w, hi_w = sorted((max(1, min(spec.window[0], n)), max(1, min(spec.window[1], n))))
  length = int(rng.integers(lo_w, hi_w + 1))
  start = int(rng.integers(0, n - length + 1))
  return label, start, length


class SyntheticFrames:
  """Frames of `SyntheticVideos(spec, split)` under the Source contract (module docstring).

  ``render_threads``: threads that render the split (default: the CPU count, at most 8).
  """
  class_names = CLASS_NAMES
  sequence_field = 'image'

  def __init__(self, spec: synthetic.SyntheticSpec, split: str, frames_per_video: int,
               label_mode: str = 'window', render_threads: int | None = None):
    if label_mode not in LABEL_MODES:
      raise ValueError(f'label_mode must be one of {LABEL_MODES}, got {label_mode!r}')
    self.videos = synthetic.SyntheticVideos(spec, split)
    self.spec, self.split, self.label_mode = spec, split, label_mode
    self.frames_per_video = int(frames_per_video)
    self.frame_index = frame_indices(spec.num_frames, self.frames_per_video)
    self.render_threads = render_threads or min(os.cpu_count() or 1, 8)
    self._labels = None
    self._pixels = None
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return len(self.videos) * self.frames_per_video

  def __repr__(self) -> str:
    return (f'SyntheticFrames({self.spec}, split={self.split!r}, '
            f'frames_per_video={self.frames_per_video}, label_mode={self.label_mode!r})')

  def __getstate__(self):
    state = dict(self.__dict__)
    state['_lock'] = None
    state['_pixels'] = None
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()

  # -- labels without pixels ----------------------------------------------------------------------
  def video_windows(self) -> np.ndarray:
    """int64 [videos, 3]: (label, start, length) of every video's event window."""
    return np.array([event_window(self.spec, self.videos._rng(v), self.videos._cdf)  # noqa: SLF001
                     for v in range(len(self.videos))], np.int64).reshape(-1, 3)

  def labels(self) -> np.ndarray:
    if self._labels is None:
      w = self.video_windows()
      label = np.repeat(w[:, 0], self.frames_per_video)
      if self.label_mode == 'window':
        t = np.tile(self.frame_index, len(self.videos))
        start, length = np.repeat(w[:, 1], self.frames_per_video), np.repeat(w[:, 2],
                                                                            self.frames_per_video)
        inside = (t >= start) & (t < start + length)
        label = np.where(inside, label, NORMAL)
      self._labels = label.astype(np.int32)
    return self._labels

  def lengths(self) -> np.ndarray:
    return np.ones(len(self), np.int64)

  def video_ids(self) -> list[str]:
    """One name an example: 'synthetic-<seed>/<split>/<video>' (a video is a function of the
    seed, split and index alone, so two sources of one spec and split share names)."""
    return [f'synthetic-{self.spec.seed}/{self.split}/{v}' for v in range(len(self.videos))
            for _ in range(self.frames_per_video)]

  # -- pixels -------------------------------------------------------------------------------------
  def _render_video(self, v: int) -> np.ndarray:
    return self.videos[v]['frames'][self.frame_index]

  def _render(self) -> np.ndarray:
    n, spec = len(self.videos), self.spec
    out = np.empty((len(self), spec.height, spec.width, 3), np.uint8)
    k = self.frames_per_video
    from tqdm import tqdm
    with tqdm(total=n, unit='video', desc=f'rendering {self.split} frames',
              disable=n <= 16) as bar, ThreadPoolExecutor(self.render_threads) as pool:
      for v, frames in enumerate(pool.map(self._render_video, range(n))):
        out[v * k:(v + 1) * k] = frames
        bar.update()
    return out

  def pixels(self) -> np.ndarray:
    """uint8 [len, H, W, 3]: every example's frame (rendered on first call)."""
    if self._pixels is None:
      with self._lock:
        if self._pixels is None:
          pixels = self._render()
          pixels.setflags(write=False)
          self._pixels = pixels
    return self._pixels

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(index)
    v, j = divmod(index, self.frames_per_video)
    return {'image': self.pixels()[index].copy(), 'label': np.int32(self.labels()[index]),
            'index': np.int32(index), 'video': np.int32(v),
            'frame': np.int32(self.frame_index[j])}

  def train_transform(self, example: dict, rng: np.random.Generator) -> dict:
    del rng
    return example

  def eval_transform(self, example: dict) -> dict:
    return example
