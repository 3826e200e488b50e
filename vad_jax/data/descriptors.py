"""Parameter-free per-frame descriptors of fixed-camera videos (features without any weights).

`motion_descriptor` turns a video into one vector a frame that a temporal model can learn
person-on-person violence from: where foreground is (people, props, events) and where and how
much it moves. Hand-written because it is a few numpy reductions over a video's own median
background, which no kept library computes.
"""

from __future__ import annotations

import numpy as np

GRID = 8                       # cells a side of the coarse grid
TOP = 8                        # largest motion cells kept position-free (sorted)
NAMES = tuple([f'fg_{r}_{c}' for r in range(GRID) for c in range(GRID)] +
              [f'motion_{r}_{c}' for r in range(GRID) for c in range(GRID)] +
              [f'motion_top{k}' for k in range(TOP)] +
              [f'{m}_{s}' for m in ('fg', 'motion')
               for s in ('mass', 'cx', 'cy', 'sx', 'sy')] +
              ['fg_floor', 'motion_floor'])
FEATURE_DIM = len(NAMES)       # 64 + 64 + 8 + 10 + 2 = 148


def _pool(a: np.ndarray, g: int) -> np.ndarray:
  """[N, H, W] -> [N, g*g] cell means (H, W cropped to multiples of g)."""
  n, h, w = a.shape
  ch, cw = h // g, w // g
  a = a[:, :ch * g, :cw * g].reshape(n, g, ch, g, cw)
  return a.mean(axis=(2, 4)).reshape(n, g * g)


def _channel_sum(a: np.ndarray) -> np.ndarray:
  """[..., 3] -> [...] (explicit adds: a reduction over a length-3 axis is slow in numpy)."""
  return a[..., 0] + a[..., 1] + a[..., 2]


def _above_floor(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """[N, H, W] -> (max(m - floor, 0), floor [N]), floor = the frame's median value.

  The median pixel of a foreground or motion map is background: its level is sensor noise and
  global lighting flicker, which differ between videos and say nothing about the scene.
  """
  n, h, w = m.shape
  floor = np.partition(m.reshape(n, -1), h * w // 2, axis=1)[:, h * w // 2]
  return np.maximum(m - floor[:, None, None], 0), floor


def _moments(m: np.ndarray) -> np.ndarray:
  """[N, H, W] non-negative maps -> [N, 5]: mass (mean), centroid (x, y), spread (x, y).

  Coordinates are fractions of width/height; an empty map has centroid 0.5 and spread 0.
  """
  n, h, w = m.shape
  mass = m.sum(axis=(1, 2))
  safe = np.maximum(mass, 1e-6)
  x = (np.arange(w, dtype=np.float32) + 0.5) / w
  y = (np.arange(h, dtype=np.float32) + 0.5) / h
  px, py = m.sum(axis=1), m.sum(axis=2)                  # [N, W], [N, H] marginals
  cx, cy = px @ x / safe, py @ y / safe
  sx = np.sqrt(np.maximum(px @ (x * x) / safe - cx * cx, 0))
  sy = np.sqrt(np.maximum(py @ (y * y) / safe - cy * cy, 0))
  empty = mass <= 1e-6
  cx[empty], cy[empty] = 0.5, 0.5
  return np.stack([mass / (h * w), cx, cy, sx, sy], axis=1)


def motion_descriptor(video: np.ndarray) -> np.ndarray:
  """uint8 [N, H, W, 3] -> float32 [N, FEATURE_DIM]: per-frame foreground and motion summary.

  fg_t = mean over channels of |frame_t - median frame| / 255 (the per-pixel median over the
  video is its background, as model.input='foreground' uses), motion_t = mean over channels of
  |frame_t - frame_{t-1}| / 255 (motion_0 = 0); each map then loses its per-frame floor (its
  median pixel: noise and lighting flicker) and is clipped at 0. A frame's vector (`NAMES`):
    [0:64)    fg mean in each cell of an 8x8 grid (row-major)
    [64:128)  motion mean in each cell of the 8x8 grid
    [128:136) the 8 largest motion cells, descending (how concentrated motion is, wherever it is)
    [136:141) fg moments: mass (mean), centroid x, y, spread (std) x, y; fractions of the frame
    [141:146) the same moments of motion
    [146:148) the two floors removed (fg, motion)
  Speed shows as the area of motion (a global pool cannot see displacement), a fight as strong
  motion concentrated in a small region, a chase as two motion blobs far apart.
  """
  video = np.asarray(video)
  if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
    raise ValueError(f'expected a uint8 video [N, H, W, 3], got {video.dtype} {video.shape}')
  n, h, w, _ = video.shape
  if h < GRID or w < GRID:
    raise ValueError(f'frames of {h}x{w} are smaller than the {GRID}x{GRID} grid')
  # int16 arithmetic (exact, and several times faster than float32 on these sizes); the median
  # is doubled (the mean of the two middle frames for even N) to stay integral.
  x = video.astype(np.int16)
  flat = np.ascontiguousarray(video.reshape(n, -1).T, dtype=np.float32)      # [H*W*3, N]
  part = np.partition(flat, n // 2, axis=1)
  lower = part[:, n // 2] if n % 2 else part[:, :n // 2].max(axis=1)  # other middle value
  bg2 = (part[:, n // 2] + lower).astype(np.int16).reshape(h, w, 3)
  fg = _channel_sum(np.abs(2 * x - bg2)) * np.float32(1 / (2 * 3 * 255))  # [N, H, W]
  motion = np.zeros((n, h, w), np.float32)
  motion[1:] = _channel_sum(np.abs(np.diff(x, axis=0))) * np.float32(1 / (3 * 255))
  fg, fg_floor = _above_floor(fg)
  motion, motion_floor = _above_floor(motion)
  cells = _pool(motion, GRID)
  top = -np.sort(-cells, axis=1)[:, :TOP]
  out = np.concatenate([_pool(fg, GRID), cells, top, _moments(fg), _moments(motion),
                        fg_floor[:, None], motion_floor[:, None]], axis=1)
  return out.astype(np.float32)
