"""Built-in procedural synthetic surveillance dataset with the 14 UCF-Crime classes.

A fixed camera looks at a street: a wall with a door and a shop window, a sidewalk, a road
and some ground. People walk around (cars sometimes drive by). An anomalous video of class c
shows normal activity plus the class signature confined to one window [start, start+len)
(`events.py`); its frame mask is 1 exactly on that window.

Every video is a pure function of (spec.seed, split, index), so `SyntheticVideos` is a
picklable grain RandomAccessDataSource with O(1) random access; `labels()` derives all video
labels without rendering.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from vad_jax.data import events as ev
from vad_jax.classes import CLASS_NAMES, NUM_CLASSES, NORMAL
from vad_jax.data.scene import (BAG_COLORS, CAR_COLORS, F32, PANTS, SHIRTS, SKINS, Canvas, Car,
                                Person, World, draw_bag, draw_car, draw_person, make_scene, reflect)

SPLITS = {'train': 0, 'validation': 1, 'test': 2}


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
  height: int = 64
  width: int = 64
  num_frames: int = 64            # frames per video in this split
  num_videos: int = 256
  normal_fraction: float = 0.4    # P(video is Normal); rest spread over the 13 anomaly classes
  class_imbalance: float = 1.0    # >=1: most/least frequent anomaly class ratio (geometric); 1 = uniform
  window: tuple[int, int] = (12, 20)  # min/max anomaly window length in frames (clipped to num_frames)
  max_people: int = 6             # boxes array width P
  min_event_px: float = 1.5       # size floor (pixels) of small event details; see World.at_least
  seed: int = 0
  class_probs: tuple[float, ...] | None = None  # P(label) over CLASS_NAMES (normalised); overrides
                                                # normal_fraction and class_imbalance when given


def class_probabilities(spec: SyntheticSpec) -> np.ndarray:
  """float64 [NUM_CLASSES]: P(label) for one video."""
  if spec.class_probs is not None:
    p = np.asarray(spec.class_probs, np.float64)
    if p.shape != (NUM_CLASSES,):
      raise ValueError(f'class_probs needs {NUM_CLASSES} probabilities (one per CLASS_NAMES), '
                       f'got {p.shape[0] if p.ndim == 1 else p.shape}')
    if not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
      raise ValueError(f'class_probs must be finite, non-negative and not all 0, got {spec.class_probs}')
    return p / p.sum()
  k = np.arange(NUM_CLASSES - 1)
  w = float(max(spec.class_imbalance, 1.0)) ** (-k / max(NUM_CLASSES - 2, 1))
  p = np.empty(NUM_CLASSES)
  p[NORMAL] = spec.normal_fraction
  p[1:] = (1 - spec.normal_fraction) * w / w.sum()
  return p


def _label(rng, cdf) -> int:
  return int(min(np.searchsorted(cdf, rng.random(), side='right'), NUM_CLASSES - 1))


class SyntheticVideos:
  """grain RandomAccessDataSource of procedurally rendered surveillance videos."""

  def __init__(self, spec: SyntheticSpec, split: str):
    if split not in SPLITS:
      raise ValueError(f'split must be one of {sorted(SPLITS)}, got {split!r}')
    if spec.max_people < 2:
      raise ValueError('max_people must be >= 2')
    if spec.min_event_px < 0:
      raise ValueError(f'min_event_px must be >= 0, got {spec.min_event_px}')
    self.spec = spec
    self.split = split
    self._split_id = SPLITS[split]
    self._cdf = np.cumsum(class_probabilities(spec))

  def __len__(self) -> int:
    return self.spec.num_videos

  def __repr__(self) -> str:
    return f'SyntheticVideos({self.spec}, split={self.split!r})'

  def _rng(self, index: int):
    return np.random.default_rng([self.spec.seed, self._split_id, int(index)])

  def labels(self) -> np.ndarray:
    return np.array([_label(self._rng(i), self._cdf) for i in range(len(self))], np.int32)

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(index)
    return render(self.spec, self._rng(index), self._cdf, index)


def _make_people(rng, spec: SyntheticSpec, scene, n_people: int) -> list:
  N, H, W = spec.num_frames, spec.height, spec.width
  t = np.arange(N, dtype=F32)[:, None]
  people, prev = [], None
  for i in range(n_people):
    h = rng.uniform(0.15, 0.25)
    w = 0.4 * h * H / W
    p = Person(h, w, np.clip(SHIRTS[rng.integers(len(SHIRTS))] + rng.uniform(-15, 15, 3), 0, 255).astype(F32),
               np.clip(PANTS[rng.integers(len(PANTS))] + rng.uniform(-10, 10, 3), 0, 255).astype(F32),
               SKINS[rng.integers(len(SKINS))], np.zeros((N, 2), F32), np.ones(N, bool),
               np.zeros(N, bool), slot=i if i < spec.max_people else -1,
               hat=PANTS[rng.integers(len(PANTS))] if rng.random() < 0.25 else None)
    lo, hi = p.bounds(scene.wall_y)
    mode = rng.random()
    if prev is not None and mode < 0.25:            # walk alongside / behind the previous person
      p0 = prev[0] + rng.uniform(-0.12, 0.12, 2).astype(F32) * [1.0, 0.3]
      v = prev[1]
    else:
      p0 = rng.uniform(lo, hi).astype(F32)
      v = ev.walk_velocity(rng) if mode < 0.8 else np.zeros(2, F32)   # some people stand still
    sway = 0.003 * np.sin(t * rng.uniform(0.1, 0.3) + rng.uniform(0, 6)) * np.array([0, 1], F32)
    p.pos[:] = reflect(p0 + v * t + sway, lo, hi)
    people.append(p)
    prev = (p0, v)
  return people


def _make_traffic(rng, spec: SyntheticSpec, scene) -> list:
  N = spec.num_frames
  r0, r1 = scene.road
  t = np.arange(N, dtype=F32)
  cars = []
  if rng.random() < 0.5:
    for _ in range(int(rng.integers(1, 3))):
      side = rng.choice([-1.0, 1.0])
      length, v = rng.uniform(0.15, 0.2), rng.uniform(0.02, 0.04)
      y = (r0 + r1) / 2 + side * (r1 - r0) / 4
      x = rng.uniform(-0.3, 1.3) + side * v * (t - rng.uniform(0, N))
      cars.append(Car(np.stack([x, np.full(N, y, F32)], 1).astype(F32), length, (r1 - r0) * 0.55,
                      CAR_COLORS[rng.integers(len(CAR_COLORS))]))
  return cars


def render(spec: SyntheticSpec, rng, cdf, index: int) -> dict:
  N, H, W = spec.num_frames, spec.height, spec.width
  label = _label(rng, cdf)                          # always the first draw (see labels())
  mask = np.zeros(N, np.uint8)
  lo_w, hi_w = sorted((max(1, min(spec.window[0], N)), max(1, min(spec.window[1], N))))
  length = int(rng.integers(lo_w, hi_w + 1))
  start = int(rng.integers(0, N - length + 1))
  scene = make_scene(rng, H, W)
  P = spec.max_people
  n_people = int(rng.integers(2, max(2, P - 1) + 1))
  people = _make_people(rng, spec, scene, n_people)
  world = World(N, H, W, scene, people, _make_traffic(rng, spec, scene), min_px=spec.min_event_px)
  if rng.random() < 0.35:                            # a bag lying on the ground (normal prop)
    pb = np.array([rng.uniform(0.1, 0.9), rng.uniform(scene.wall_y + 0.1, 0.97)], F32)
    world.bags.append((np.arange(N), np.repeat(pb[None], N, 0), world.bag_size(rng),
                       BAG_COLORS[rng.integers(len(BAG_COLORS))]))
  if label != NORMAL:
    name = CLASS_NAMES[label]
    mask[start:start + length] = 1
    fn = ev.EVENTS[name]
    if name == 'Burglary':
      fn(world, start, start + length, rng, P)
    else:
      fn(world, start, start + length, rng)

  # -- boxes ------------------------------------------------------------------------------------
  boxes = np.zeros((N, P, 4), F32)
  valid = np.zeros((N, P), bool)
  for i, p in enumerate(world.people):
    if i < n_people:                                 # walkers stay inside their walkable area
      lo, hi = p.bounds(scene.wall_y)
      p.pos[:] = np.clip(p.pos, lo, hi)
    if 0 <= p.slot < P:
      c = p.pos
      b = np.stack([c[:, 0] - p.w / 2, c[:, 1] - p.h / 2, c[:, 0] + p.w / 2, c[:, 1] + p.h / 2], 1)
      boxes[:, p.slot] = np.where(p.visible[:, None], np.clip(b, 0, 1), 0)
      valid[:, p.slot] = p.visible

  # -- pixels -----------------------------------------------------------------------------------
  canvas = Canvas(scene.bg, N)
  for op in world.under:
    op(canvas)
  for car in world.cars:
    draw_car(canvas, car)
  carried = []
  for bag in world.bags:                             # bags on the ground below people, carried above
    frames, pos = bag[0], bag[1]
    if len(frames) and np.allclose(pos, pos[:1]):
      draw_bag(canvas, *bag)
    else:
      carried.append(bag)
  for p in sorted(world.people, key=lambda p: float(p.pos[:, 1].mean() + p.h / 2)):
    draw_person(canvas, p)
  for frames, pos, size, color in carried:
    draw_bag(canvas, frames, pos, size, color)
  for op in world.over:
    op(canvas)
  view = canvas.view
  light = rng.uniform(0.75, 1.15) * (1 + rng.uniform(0.02, 0.07) * np.sin(
      2 * np.pi * np.arange(N) / rng.uniform(80, 300) + rng.uniform(0, 6.3)))
  tint = rng.uniform(0.94, 1.06, 3)
  view *= (light[:, None] * tint).astype(F32)[:, None, None, :]
  S = H * W * 3
  pool = rng.standard_normal(2 * S, dtype=F32) * F32(rng.uniform(1.5, 3.0))
  offs = rng.integers(0, S, N)
  flat = view.reshape(N, S)
  for i in range(N):
    flat[i] += pool[offs[i]:offs[i] + S]
  np.clip(view, 0, 255, out=view)
  return {
      'frames': view.astype(np.uint8),
      'label': np.int32(label),
      'mask': mask,
      'boxes': boxes,
      'box_valid': valid,
      'index': np.int32(index),
  }
