"""Video files in and out (PyAV), and the frame-rate mapping every real-data path shares.

Frame-rate mapping (one definition, used by decoding AND by per-frame ground truth): output
frame j of a video resampled from `src_fps` to `dst_fps` shows source frame
``floor(j * src_fps / dst_fps)`` (0-based), for every j whose source frame exists. Upsampling is
never done: dst_fps >= src_fps (or None) keeps every source frame. An annotation on source
frames therefore follows the video exactly: truth[j] = source_truth[resample_indices(...)[j]].
"""

from __future__ import annotations

import numpy as np


def resample_indices(num_frames: int, src_fps: float, dst_fps: float | None) -> np.ndarray:
  """int64 [M]: the source frame (0-based) shown by each output frame (see the module docstring)."""
  if num_frames < 0:
    raise ValueError(f'num_frames must be >= 0, got {num_frames}')
  if not dst_fps or dst_fps >= src_fps:
    return np.arange(num_frames, dtype=np.int64)
  if src_fps <= 0 or dst_fps <= 0:
    raise ValueError(f'fps must be > 0, got src {src_fps}, dst {dst_fps}')
  step = float(src_fps) / float(dst_fps)
  m = int(np.ceil(num_frames / step - 1e-9))
  idx = np.floor(np.arange(m) * step + 1e-9).astype(np.int64)
  return idx[idx < num_frames]
