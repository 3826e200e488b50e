"""Rendering primitives for the procedural surveillance scene (see `synthetic.py`).

Everything is vectorised numpy. Geometry lives in normalised units (x in [0,1] of the frame
width, y in [0,1] of the frame height) so any resolution can be rendered. Moving sprites are
drawn through `Patch`: a small [K, ph, pw] window gathered from K frames of the video canvas,
painted with anti-aliased shapes, then scattered back; off-frame pixels go to a trash slot.
"""
from __future__ import annotations

import dataclasses

import numpy as np

F32 = np.float32

SHIRTS = np.array([(200, 40, 40), (40, 70, 190), (40, 150, 60), (225, 225, 225), (120, 120, 125),
                   (30, 30, 35), (130, 80, 40), (130, 50, 150), (220, 120, 40), (40, 150, 150),
                   (230, 140, 170), (90, 110, 60)], F32)
PANTS = np.array([(30, 40, 90), (25, 25, 28), (90, 90, 95), (170, 150, 110), (80, 55, 35),
                  (50, 60, 70)], F32)
SKINS = np.array([(235, 195, 160), (200, 150, 110), (140, 95, 65), (90, 60, 40)], F32)
CAR_COLORS = np.array([(190, 30, 30), (30, 60, 170), (225, 225, 225), (35, 35, 38), (150, 150, 155),
                       (200, 170, 40), (40, 120, 70)], F32)
BAG_COLORS = np.array([(110, 60, 25), (150, 30, 30), (30, 30, 30), (60, 40, 90)], F32)
UNIFORM_SHIRT = np.array((205, 235, 25), F32)   # hi-vis vest: never used for normal people
UNIFORM_PANTS = np.array((15, 20, 55), F32)


class Canvas:
  """A video being rendered: float32 [N*H*W (+1 trash pixel), 3]."""

  def __init__(self, bg: np.ndarray, n: int):
    self.h, self.w = bg.shape[:2]
    self.n = n
    self.trash = n * self.h * self.w
    self.buf = np.empty((self.trash + 1, 3), F32)
    self.buf[-1] = 0                       # the trash pixel: defined, so painting it stays finite
    self.view[:] = bg[None]

  @property
  def view(self) -> np.ndarray:
    return self.buf[:-1].reshape(self.n, self.h, self.w, 3)


class Patch:
  """K frame-windows of a canvas, each ph x pw pixels with per-frame top-left corner."""

  def __init__(self, canvas: Canvas, fidx, top, left, ph: int, pw: int):
    H, W = canvas.h, canvas.w
    fidx = np.asarray(fidx, np.int64)
    rows = np.asarray(top, np.int64)[:, None] + np.arange(ph)
    cols = np.asarray(left, np.int64)[:, None] + np.arange(pw)
    ok = ((rows >= 0) & (rows < H))[:, :, None] & ((cols >= 0) & (cols < W))[:, None, :]
    flat = fidx[:, None, None] * (H * W) + rows[:, :, None] * W + cols[:, None, :]
    self.flat = np.where(ok, flat, canvas.trash)
    self.canvas = canvas
    self.pix = canvas.buf[self.flat]
    self.Y = (rows + 0.5).astype(F32)[:, :, None]   # pixel-centre coordinates, in pixels
    self.X = (cols + 0.5).astype(F32)[:, None, :]

  @classmethod
  def around(cls, canvas: Canvas, fidx, x0, y0, x1, y1, pad: int = 1) -> 'Patch | None':
    """Patch covering normalised boxes [K] (x0,y0,x1,y1) on frames fidx [K]."""
    fidx = np.asarray(fidx)
    if fidx.size == 0:
      return None
    H, W = canvas.h, canvas.w
    top = np.floor(np.asarray(y0) * H).astype(np.int64) - pad
    left = np.floor(np.asarray(x0) * W).astype(np.int64) - pad
    ph = int(np.max(np.ceil(np.asarray(y1) * H) - top)) + pad
    pw = int(np.max(np.ceil(np.asarray(x1) * W) - left)) + pad
    top = np.broadcast_to(top, fidx.shape)
    left = np.broadcast_to(left, fidx.shape)
    return cls(canvas, fidx, top, left, max(ph, 1), max(pw, 1))

  def paint(self, alpha: np.ndarray, color) -> None:
    c = np.asarray(color, F32)
    if c.ndim == 2:
      c = c[:, None, None, :]
    a = alpha[..., None]
    self.pix += a * (c - self.pix)

  def commit(self) -> None:
    self.canvas.buf[self.flat] = self.pix

  # -- shapes, all parameters in pixels, per-frame arrays [K] or scalars --------------------
  def rect(self, x0, y0, x1, y1):
    e = lambda v: np.asarray(v, F32).reshape(-1, 1, 1) if np.ndim(v) else F32(v)
    ay = np.clip(np.minimum(self.Y - e(y0), e(y1) - self.Y) + 0.5, 0, 1)
    ax = np.clip(np.minimum(self.X - e(x0), e(x1) - self.X) + 0.5, 0, 1)
    return ay * ax

  def _d(self, cx, cy, rx, ry):
    e = lambda v: np.asarray(v, F32).reshape(-1, 1, 1) if np.ndim(v) else F32(v)
    return np.sqrt(((self.X - e(cx)) / e(rx)) ** 2 + ((self.Y - e(cy)) / e(ry)) ** 2), e(rx), e(ry)

  def disk(self, cx, cy, r):
    d, r, _ = self._d(cx, cy, r, r)
    return np.clip(r * (1 - d) + 0.5, 0, 1)

  def blob(self, cx, cy, rx, ry, sharp: float = 2.0):
    """Soft ellipse: alpha 1 in the centre falling to 0 at the rim."""
    d, _, _ = self._d(cx, cy, rx, ry)
    return np.clip((1 - d) * sharp, 0, 1)

  def segment(self, xa, ya, xb, yb, thick):
    dx, dy = xb - xa, yb - ya
    t = np.clip(((self.X - xa) * dx + (self.Y - ya) * dy) / max(dx * dx + dy * dy, 1e-6), 0, 1)
    d = np.sqrt((self.X - xa - t * dx) ** 2 + (self.Y - ya - t * dy) ** 2)
    return np.clip(thick / 2 - d + 0.5, 0, 1)


def smooth_noise(rng, h: int, w: int, cells: int) -> np.ndarray:
  """Bilinearly upsampled low-res uniform noise in [-1, 1], shape [h, w]."""
  low = rng.uniform(-1, 1, (cells + 1, cells + 1)).astype(F32)
  def interp(n):
    pos = (np.arange(n) + 0.5) / n * cells
    i = np.minimum(pos.astype(np.int64), cells - 1)
    f = (pos - i).astype(F32)
    m = np.zeros((n, cells + 1), F32)
    m[np.arange(n), i] = 1 - f
    m[np.arange(n), i + 1] = f
    return m
  return interp(h) @ low @ interp(w).T


def _jit(rng, color, amount=18.0):
  return np.clip(color + rng.uniform(-amount, amount, 3), 0, 255).astype(F32)


@dataclasses.dataclass
class Scene:
  bg: np.ndarray          # float32 [H, W, 3]
  wall_y: float           # wall band is y < wall_y
  road: tuple             # (y0, y1)
  door: np.ndarray        # (x0, y0, x1, y1)
  shelf: np.ndarray       # (x0, y0, x1, y1) shop window
  shelf_bg: np.ndarray    # colour behind the items
  items: np.ndarray       # [M, 4] item boxes; row 0 items first
  top_items: np.ndarray   # indices of top-row items
  wall_color: np.ndarray


def make_scene(rng, H: int, W: int) -> Scene:
  yy = ((np.arange(H) + 0.5) / H).astype(F32)[:, None]
  xx = ((np.arange(W) + 0.5) / W).astype(F32)[None, :]
  wall_y = rng.uniform(0.3, 0.4)
  r0 = rng.uniform(wall_y + 0.17, 0.62)
  r1 = r0 + rng.uniform(0.17, 0.24)
  wall_c = _jit(rng, np.array([(150, 75, 60), (190, 175, 150), (130, 130, 135), (95, 115, 135),
                               (170, 160, 110)], F32)[rng.integers(5)], 20)
  side_c = _jit(rng, np.array((165, 160, 150), F32), 20)
  road_c = _jit(rng, np.array((70, 70, 74), F32), 10)
  ground_c = _jit(rng, np.array([(80, 125, 55), (150, 145, 130), (120, 100, 75)], F32)[rng.integers(3)], 15)
  bg = np.empty((H, W, 3), F32)
  band = (yy < wall_y) * 0 + (yy >= wall_y) * 1 + (yy >= r0) * 1 + (yy >= r1) * 1  # [H,1]
  colors = np.stack([wall_c, side_c, road_c, ground_c])
  bg[:] = colors[np.broadcast_to(band, (H, W))]
  tex = smooth_noise(rng, H, W, 6) * 0.6 + smooth_noise(rng, H, W, 16) * 0.4
  bg += (tex * rng.uniform(8, 16))[..., None] * rng.uniform(0.8, 1.2, 3).astype(F32)
  # wall courses, curb lines, dashed lane marking
  period = rng.uniform(0.03, 0.06)
  bg += ((yy < wall_y) * 5 * np.cos(2 * np.pi * yy / period))[..., None]
  for y in (wall_y, r0, r1):
    bg += (np.clip(0.5 + 0.008 * H - np.abs(yy - y) * H, 0, 1) * 40)[..., None]
  dash = (np.mod(xx + rng.uniform(), 0.16) < 0.09) & (np.abs(yy - (r0 + r1) / 2) < max(0.012, 0.5 / H))
  bg[np.broadcast_to(dash, (H, W))] = _jit(rng, np.array([(230, 230, 220), (230, 200, 60)], F32)[rng.integers(2)])

  def fill(x0, y0, x1, y1, color):
    ra, rb = max(int(np.floor(y0 * H)) - 1, 0), min(int(np.ceil(y1 * H)) + 1, H)
    ca, cb = max(int(np.floor(x0 * W)) - 1, 0), min(int(np.ceil(x1 * W)) + 1, W)
    ys, xs = yy[ra:rb], xx[:, ca:cb]
    ay = np.clip(np.minimum(ys - y0, y1 - ys) * H + 0.5, 0, 1)
    ax = np.clip(np.minimum(xs - x0, x1 - xs) * W + 0.5, 0, 1)
    sub = bg[ra:rb, ca:cb]
    sub += (ay * ax)[..., None] * (np.asarray(color, F32) - sub)

  # door and shop window at non-overlapping x positions
  dw, sw = rng.uniform(0.08, 0.11), rng.uniform(0.26, 0.34)
  if rng.random() < 0.5:
    dx = rng.uniform(0.04, 0.5 - dw); sx = rng.uniform(max(dx + dw + 0.06, 0.45), 0.97 - sw)
  else:
    sx = rng.uniform(0.03, 0.5 - sw + 0.04); dx = rng.uniform(max(sx + sw + 0.06, 0.6), 0.96 - dw)
  door = np.array([dx, wall_y * rng.uniform(0.2, 0.35), dx + dw, wall_y], F32)
  frame_c = wall_c * 0.55
  fill(door[0] - 0.012, door[1] - 0.015, door[2] + 0.012, door[3], frame_c)
  fill(*door, _jit(rng, np.array([(110, 70, 40), (70, 90, 70), (140, 140, 145), (60, 60, 80)], F32)[rng.integers(4)]))
  fill(door[2] - 0.03, (door[1] + door[3]) / 2, door[2] - 0.015, (door[1] + door[3]) / 2 + 0.02, (210, 190, 80))
  shelf = np.array([sx, wall_y * 0.1, sx + sw, wall_y * rng.uniform(0.8, 0.9)], F32)
  shelf_bg = _jit(rng, np.array((205, 205, 195), F32), 15)
  fill(shelf[0] - 0.015, shelf[1] - 0.02, shelf[2] + 0.015, shelf[3] + 0.02, frame_c)
  fill(*shelf, shelf_bg)
  items, top = [], []
  sh = shelf[3] - shelf[1]
  for row, (ry0, ry1) in enumerate(((0.08, 0.45), (0.55, 0.92))):
    n = rng.integers(3, 6)
    slot = sw / n
    for k in range(n):
      iw = slot * rng.uniform(0.55, 0.8)
      x0 = sx + k * slot + (slot - iw) / 2
      y0 = shelf[1] + sh * (ry0 + rng.uniform(0, 0.1))
      box = (x0, y0, x0 + iw, shelf[1] + sh * ry1)
      if row == 0:
        top.append(len(items))
      items.append(box)
      fill(*box, SHIRTS[rng.integers(len(SHIRTS))] * 0.9)
    fill(sx, shelf[1] + sh * ry1, sx + sw, shelf[1] + sh * ry1 + 0.012, frame_c)
  return Scene(bg, float(wall_y), (float(r0), float(r1)), door, shelf, shelf_bg,
               np.array(items, F32), np.array(top), wall_c)


# -- dynamic objects ---------------------------------------------------------------------------
@dataclasses.dataclass
class Person:
  h: float                 # box height (fraction of frame height)
  w: float                 # box width (fraction of frame width)
  shirt: np.ndarray
  pants: np.ndarray
  skin: np.ndarray
  pos: np.ndarray          # float [N, 2] box centre (x, y)
  visible: np.ndarray      # bool [N]
  uniform: np.ndarray      # bool [N]: wear police uniform on this frame
  slot: int = -1           # column in the boxes array, -1 = not reported
  hat: np.ndarray | None = None

  def bounds(self, wall_y: float):
    lo = np.array([self.w / 2, wall_y - 0.35 * self.h], F32)
    hi = np.array([1 - self.w / 2, 1 - self.h / 2], F32)
    return lo, hi


def reflect(p: np.ndarray, lo, hi) -> np.ndarray:
  """Ping-pong positions into [lo, hi] (per axis), keeping speed constant."""
  span = np.maximum(np.asarray(hi) - np.asarray(lo), 1e-6)
  y = np.mod(p - lo, 2 * span)
  return lo + np.where(y > span, 2 * span - y, y)


def draw_person(canvas: Canvas, p: Person) -> None:
  f = np.nonzero(p.visible)[0]
  if f.size == 0:
    return
  H, W = canvas.h, canvas.w
  cx, cy = p.pos[f, 0], p.pos[f, 1]
  patch = Patch.around(canvas, f, cx - p.w / 2, cy - p.h / 2, cx + p.w / 2, cy + p.h / 2)
  # leg swing driven by the distance actually travelled
  step = np.r_[0, np.cumsum(np.hypot(np.diff(p.pos[:, 0]) * W / H, np.diff(p.pos[:, 1])))][f]
  swing = 0.18 * np.sin(2 * np.pi * step / (0.5 * p.h))
  bx, by, bw, bh = cx * W, (cy - p.h / 2) * H, p.w * W, p.h * H
  shirt = np.where(p.uniform[f, None], UNIFORM_SHIRT, p.shirt)
  pants = np.where(p.uniform[f, None], UNIFORM_PANTS, p.pants)
  for side in (-1, 1):
    lx = bx + bw * (side * 0.17 + side * swing)
    patch.paint(patch.rect(lx - 0.15 * bw, by + 0.58 * bh, lx + 0.15 * bw, by + bh), pants)
  patch.paint(patch.rect(bx - 0.42 * bw, by + 0.22 * bh, bx + 0.42 * bw, by + 0.62 * bh), shirt)
  patch.paint(patch.disk(bx, by + 0.115 * bh, 0.115 * bh), p.skin)
  if p.hat is not None or p.uniform.any():
    cap = np.where(p.uniform[f, None], UNIFORM_PANTS, p.hat if p.hat is not None else p.skin)
    a = patch.rect(bx - 0.3 * bw, by, bx + 0.3 * bw, by + 0.08 * bh)
    if p.hat is None:
      a = a * p.uniform[f, None, None]
    patch.paint(a, cap)
  patch.commit()


@dataclasses.dataclass
class Car:
  pos: np.ndarray          # float [N, 2] centre
  length: float            # fraction of width
  height: float            # fraction of height
  color: np.ndarray


def draw_car(canvas: Canvas, car: Car) -> None:
  H, W = canvas.h, canvas.w
  x, y = car.pos[:, 0], car.pos[:, 1]
  f = np.nonzero((x + car.length / 2 > 0) & (x - car.length / 2 < 1))[0]
  if f.size == 0:
    return
  x, y = x[f], y[f]
  patch = Patch.around(canvas, f, x - car.length / 2, y - car.height / 2, x + car.length / 2, y + car.height / 2)
  cx, cy, L, h = x * W, y * H, car.length * W, car.height * H
  patch.paint(patch.rect(cx - 0.3 * L, cy - 0.5 * h, cx + 0.3 * L, cy), car.color * 0.85)
  patch.paint(patch.rect(cx - 0.24 * L, cy - 0.42 * h, cx + 0.24 * L, cy - 0.05 * h), (60, 80, 100))
  patch.paint(patch.rect(cx - 0.5 * L, cy - 0.1 * h, cx + 0.5 * L, cy + 0.32 * h), car.color)
  for s in (-0.3, 0.3):
    patch.paint(patch.disk(cx + s * L, cy + 0.3 * h, 0.2 * h), (20, 20, 20))
  patch.commit()


def draw_bag(canvas: Canvas, frames, pos: np.ndarray, size: float, color) -> None:
  """Bag with its bottom-centre at pos [K, 2]; size = height as a fraction of frame height."""
  if len(frames) == 0:
    return
  H, W = canvas.h, canvas.w
  bw = size * 1.2 * H / W
  x, y = pos[:, 0], pos[:, 1]
  patch = Patch.around(canvas, frames, x - bw / 2, y - size, x + bw / 2, y)
  px, py, s = x * W, y * H, size * H
  patch.paint(patch.rect(px - 0.6 * s, py - 0.75 * s, px + 0.6 * s, py), color)
  patch.paint(patch.rect(px - 0.3 * s, py - s, px + 0.3 * s, py - 0.75 * s), np.asarray(color) * 0.5)
  patch.commit()


@dataclasses.dataclass
class World:
  """Everything that moves in one video; events edit it before rendering."""
  n: int
  H: int
  W: int
  scene: Scene
  people: list
  cars: list = dataclasses.field(default_factory=list)
  bags: list = dataclasses.field(default_factory=list)    # (frames [K], pos [K, 2], size, colour)
  under: list = dataclasses.field(default_factory=list)   # callables(canvas) drawn before people
  over: list = dataclasses.field(default_factory=list)    # callables(canvas) drawn after people
  min_px: float = 0.0      # size floor of event details, pixels (SyntheticSpec.min_event_px)

  def at_least(self, frac, axis: str = 'h', factor: float = 1.0):
    """`frac` (a fraction of the frame height 'h' or width 'w') raised to at least
    factor * min_px pixels: the floor keeps small event details (paint strokes, debris, bags,
    fight jitter) visible at low resolution and is inactive once the frame is large enough."""
    floor = factor * self.min_px / (self.H if axis == 'h' else self.W)
    return np.maximum(np.asarray(frac, F32), F32(floor))

  def bag_size(self, rng):
    """Height of a bag (fraction of the frame height), floored at 2 * min_px: one rule for
    props and stolen bags alike, so a bag's size never tells the class."""
    return self.at_least(rng.uniform(0.05, 0.07), 'h', 2.0)
