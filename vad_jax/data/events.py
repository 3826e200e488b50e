"""Per-class anomaly signatures for the synthetic surveillance dataset.

Each event edits a `World` (scene.py) inside the window [s, e): it re-routes people (walking
normally before and after the window) and/or registers extra drawing ops that only touch
frames in [s, e). Nothing an event adds survives past e, so frames outside the window are
normal. Motion-only events (Abuse, Assault, Fighting, Robbery) only move existing people.
"""
from __future__ import annotations

import numpy as np

from vad_jax.data.scene import F32, Patch, Person, World, reflect

WALK = (0.005, 0.015)      # normal walking speed, fraction of frame width per frame
RUN = (0.045, 0.06)        # running: ~5x walking


def walk_velocity(rng, speed=None) -> np.ndarray:
  sp = rng.uniform(*WALK) if speed is None else speed
  a = rng.uniform(-0.45, 0.45)
  return np.array([np.cos(a) * rng.choice([-1.0, 1.0]), np.sin(a)], F32) * sp


def _unit(v) -> np.ndarray:
  v = np.asarray(v, F32)
  return v / max(float(np.hypot(*v)), 1e-6)


def splice(w: World, p: Person, s: int, e: int, seg, rng, keep_pre: bool = False) -> None:
  """p follows seg [e-s, 2] inside the window and walks normally before/after it."""
  lo, hi = p.bounds(w.scene.wall_y)
  seg = np.clip(np.asarray(seg, F32), lo, hi)
  t = np.arange(w.n, dtype=F32)[:, None]
  if not keep_pre:
    p.pos[:s] = reflect(seg[0] + walk_velocity(rng) * (t[:s] - s), lo, hi)
  p.pos[s:e] = seg
  p.pos[e:] = reflect(seg[-1] + walk_velocity(rng) * (t[e:] - (e - 1)), lo, hi)


def _pick(w: World, rng, k: int) -> list:
  idx = rng.permutation(len(w.people))[:k]
  return [w.people[i] for i in idx]


def _joint_bounds(w: World, *ps):
  b = [p.bounds(w.scene.wall_y) for p in ps]
  return np.max([x[0] for x in b], 0), np.min([x[1] for x in b], 0)


def _spot(rng, lo, hi, margin=(0.0, 0.0)) -> np.ndarray:
  lo2, hi2 = lo + np.asarray(margin), hi - np.asarray(margin)
  return rng.uniform(np.minimum(lo2, hi2), np.maximum(lo2, hi2)).astype(F32)


# -- motion-only classes -----------------------------------------------------------------------
def fighting(w: World, s: int, e: int, rng) -> None:
  A, B = _pick(w, rng, 2)
  L = e - s
  lo, hi = _joint_bounds(w, A, B)
  m = _spot(rng, lo, hi, (0.1, 0.0))
  dx = 0.3 * (A.w + B.w)
  k = np.arange(L)
  for p, side in ((A, -1.0), (B, 1.0)):
    amp = w.at_least(rng.uniform(0.018, 0.028), 'w')
    jx = amp * (-1.0) ** (k + rng.integers(2)) * rng.uniform(0.6, 1.4, L)
    jy = amp * 0.5 * rng.standard_normal(L)
    seg = m + np.array([side * dx, 0], F32) + np.stack([jx, jy], 1)
    splice(w, p, s, e, seg, rng)


def assault(w: World, s: int, e: int, rng) -> None:
  A, B = _pick(w, rng, 2)                      # attacker, victim
  L = e - s
  k1 = max(1, int(round(L * rng.uniform(0.3, 0.45))))
  vr = rng.uniform(*RUN)
  d = _unit([rng.choice([-1.0, 1.0]), rng.uniform(-0.2, 0.2)])
  run = vr * k1 + 0.6 * (A.w + B.w) / 2
  lo, hi = _joint_bounds(w, A, B)
  pb = _spot(rng, lo, hi)
  pb = np.clip(pb, lo + np.maximum(d * run, 0) + 0.02, hi + np.minimum(d * run, 0) - 0.02)
  t = np.arange(L, dtype=F32)[:, None]
  after = np.maximum(t - k1, 0)
  shove, tau = rng.uniform(0.2, 0.3), rng.uniform(1.8, 2.6)
  pa = pb - d * run + d * vr * np.minimum(t, k1) + d * shove * 0.6 * (1 - np.exp(-after / (tau * 1.3)))
  pv = pb + d * shove * (1 - np.exp(-after / tau)) + np.array([0, 0.01], F32) * (after > 0)
  splice(w, A, s, e, pa, rng)
  splice(w, B, s, e, pv, rng)


def robbery(w: World, s: int, e: int, rng) -> None:
  V, C = _pick(w, rng, 2)                      # victim runs, chaser follows on the same path
  L = e - s
  lo, hi = _joint_bounds(w, V, C)
  vr = rng.uniform(*RUN)
  d = _unit([rng.choice([-1.0, 1.0]), rng.uniform(-0.25, 0.25)])
  lag = rng.uniform(0.1, 0.17)
  p0 = _spot(rng, lo, hi)
  t = np.arange(L, dtype=F32)[:, None]
  splice(w, V, s, e, reflect(p0 + d * vr * t, lo, hi), rng)
  splice(w, C, s, e, reflect(p0 - d * lag + d * vr * t, lo, hi), rng)


def abuse(w: World, s: int, e: int, rng) -> None:
  V, A = _pick(w, rng, 2)                      # stationary victim, repeatedly lunging abuser
  L = e - s
  lo, hi = _joint_bounds(w, A, V)
  pv = _spot(rng, lo, hi, (0.16, 0.0))
  side = rng.choice([-1.0, 1.0])
  ww = (A.w + V.w) / 2
  g_far, g_near = rng.uniform(1.6, 1.9) * ww, rng.uniform(0.35, 0.5) * ww
  T = rng.uniform(4.0, 6.0)
  k = np.arange(L, dtype=F32)
  pulse = 0.5 * (1 - np.cos(2 * np.pi * k / T + rng.uniform(-0.5, 0.5)))
  ax = pv[0] + side * (g_far - (g_far - g_near) * pulse)
  ay = pv[1] + 0.004 * rng.standard_normal(L) + (A.h - V.h) / 2
  vx = pv[0] - side * 0.3 * ww * pulse ** 4
  splice(w, A, s, e, np.stack([ax, ay], 1), rng)
  splice(w, V, s, e, np.stack([vx, np.full(L, pv[1], F32)], 1), rng)


# -- visual classes ----------------------------------------------------------------------------
def _frames(s, e):
  return np.arange(s, e)


def explosion(w: World, s: int, e: int, rng) -> None:
  L = e - s
  cx, cy = rng.uniform(0.2, 0.8), rng.uniform(w.scene.wall_y + 0.05, 0.85)
  R0 = rng.uniform(0.12, 0.18)
  kf = 2 if L >= 6 else 1
  g = rng.uniform(80, 140)
  smoke = np.array([g, g * 0.97, g * 0.93], F32)
  ph1, ph2 = rng.uniform(0, 6, 2)

  def draw(c):
    H, W = c.h, c.w
    f = _frames(s, e)
    tau = np.arange(L, dtype=F32) / max(L - 1, 1)
    r = R0 * np.where(np.arange(L) < kf, 1.0, 0.7 + 1.3 * tau)     # radius, fraction of H
    px, py, rp = cx * W, cy * H, r * H
    p = Patch.around(c, f, cx - r * H / W, cy - r, cx + r * H / W, cy + r)
    flash = (np.arange(L) < kf)[:, None, None]
    texture = 0.78 + 0.22 * np.sin(p.X / (0.25 * rp[:, None, None]) + ph1) * np.cos(p.Y / (0.3 * rp[:, None, None]) + ph2)
    a_smoke = 0.92 * p.blob(px, py, rp, rp, 1.8) * texture
    p.paint(np.where(flash, 0, a_smoke), smoke)
    fire = np.clip(1 - (np.arange(L) - kf) / 3.0, 0, 1)[:, None, None] * (~flash)
    p.paint(fire * p.blob(px, py + 0.2 * rp, 0.5 * rp, 0.4 * rp, 2.0), (280, 130, 30))
    p.paint(np.where(flash, p.blob(px, py, rp, rp, 1.4), 0), (340, 320, 250))
    p.commit()
  w.over.append(draw)


def arson(w: World, s: int, e: int, rng) -> None:
  L = e - s
  fx = rng.uniform(0.1, 0.9)
  fy = rng.uniform(w.scene.wall_y + 0.03, min(w.scene.road[0] + 0.02, 0.7))
  hf1 = rng.uniform(0.16, 0.22)
  tau = np.arange(L, dtype=F32) / max(L - 1, 1)
  hf = hf1 * (0.35 + 0.65 * tau) * rng.uniform(0.85, 1.15, L)
  jx = rng.uniform(-0.08, 0.08, L) * hf
  red = np.array([230, rng.uniform(30, 70), 10], F32)

  def draw(c):
    H, W = c.h, c.w
    hp, wp = hf * H, 0.6 * hf * H
    x = fx * W + jx * H
    y = fy * H
    top = fy - 2.1 * hf
    p = Patch.around(c, _frames(s, e), fx - 0.45 * hf1 * H / W, top, fx + 0.45 * hf1 * H / W, np.full(L, fy))
    p.paint(0.55 * p.blob(x, y - 1.45 * hp, 0.45 * wp, 0.5 * hp, 1.5), (70, 68, 66))
    p.paint(p.blob(x, y - 0.45 * hp, 0.5 * wp, 0.5 * hp, 3.0), red)
    p.paint(p.blob(x, y - 0.38 * hp, 0.34 * wp, 0.38 * hp, 3.0), (300, 150, 25))
    p.paint(p.blob(x, y - 0.25 * hp, 0.18 * wp, 0.22 * hp, 2.5), (320, 290, 140))
    p.commit()
  w.over.append(draw)


def road_accident(w: World, s: int, e: int, rng) -> None:
  from vad_jax.data.scene import CAR_COLORS, Car
  L = e - s
  r0, r1 = w.scene.road
  yc, off = (r0 + r1) / 2, (r1 - r0) / 4
  tc = s + max(1, int(round(L * rng.uniform(0.3, 0.45))))
  xc = rng.uniform(0.3, 0.7)
  t = np.arange(w.n, dtype=F32)
  ch = (r1 - r0) * 0.55
  for side in (-1.0, 1.0):
    length = rng.uniform(0.15, 0.2)
    v = rng.uniform(0.025, 0.04)
    stop = xc + side * length * 0.45
    x = np.where(t < tc, stop + side * v * (tc - t), stop + side * 0.02 * (1 - np.exp(-(t - tc) / 1.5)))
    ramp = np.clip((t - s) / max(tc - s, 1), 0, 1)
    y = yc + side * off * (1 - ramp)
    x = np.where(t < e, x, -10.0)
    w.cars.append(Car(np.stack([x, y], 1).astype(F32), length, ch, CAR_COLORS[rng.integers(len(CAR_COLORS))]))
  M = int(rng.integers(12, 20))
  ang = rng.uniform(0, 2 * np.pi, M)
  sp = rng.uniform(0.01, 0.03, M)
  size = w.at_least(rng.uniform(0.012, 0.025, M))
  col = np.array([(200, 220, 235), (25, 25, 25), (150, 150, 150), (230, 230, 230)], F32)[rng.integers(4, size=M)]
  cy = yc + 0.1 * ch

  def draw(c):
    H, W = c.h, c.w
    f = _frames(tc, e)
    if f.size == 0:
      return
    k = (f - tc).astype(F32)[:, None]
    spread = 2.0 * (1 - np.exp(-k / 2.0))                           # [K, 1]
    px = (xc + np.cos(ang) * sp * spread) * W                      # [K, M]
    py = (cy + np.sin(ang) * sp * spread * 0.6) * H
    p = Patch.around(c, f, xc - 0.1, cy - 0.08, xc + 0.1, cy + 0.08)
    p.paint(0.6 * np.clip(1 - k[:, :, None] / 6, 0, 1) * p.blob(xc * W, (cy - 0.05) * H, 0.06 * W, 0.05 * H, 1.5), (120, 120, 120))
    for m in range(M):
      hs = size[m] * H / 2
      p.paint(p.rect(px[:, m] - hs, py[:, m] - hs, px[:, m] + hs, py[:, m] + hs), col[m])
    p.commit()
  w.over.append(draw)


def shooting(w: World, s: int, e: int, rng) -> None:
  L = e - s
  S = _pick(w, rng, 1)[0]
  ps = S.pos[s].copy()
  splice(w, S, s, e, ps + 0.002 * rng.standard_normal((L, 2)), rng, keep_pre=True)
  others = [p for p in w.people if p is not S and p.slot >= 0]
  face = np.sign(np.mean([p.pos[s, 0] for p in others]) - ps[0]) if others else 1.0
  face = face if face != 0 else 1.0
  mx, my = ps[0] + face * 0.62 * S.w, ps[1] - 0.08 * S.h
  period = int(rng.integers(2, 4))
  shots = np.arange(s + int(rng.integers(0, period)), e, period)
  r = rng.uniform(0.03, 0.045)
  t = np.arange(L, dtype=F32)[:, None]
  for p in others:
    lo, hi = p.bounds(w.scene.wall_y)
    p0 = p.pos[s].copy()
    d = _unit(p0 - ps + rng.normal(0, 0.05, 2) + 1e-3)
    delay = rng.integers(0, 3)
    seg = reflect(p0 + d * rng.uniform(*RUN) * np.maximum(t - delay, 0), lo, hi)
    splice(w, p, s, e, seg, rng, keep_pre=True)

  def draw(c):
    H, W = c.h, c.w
    p = Patch.around(c, shots, mx - 2 * r * H / W, my - 2 * r, mx + 2 * r * H / W, my + 2 * r)
    if p is None:
      return
    p.paint(0.8 * p.blob(mx * W, my * H, 2 * r * H, 2 * r * H, 1.2), (330, 260, 120))
    p.paint(p.blob(mx * W, my * H, r * H, 0.7 * r * H, 3.0), (360, 350, 300))
    p.commit()
  w.over.append(draw)


def burglary(w: World, s: int, e: int, rng, max_people: int) -> None:
  L = e - s
  door = w.scene.door
  dcx = float(door[0] + door[2]) / 2
  h = min(rng.uniform(0.17, 0.22), float(door[3] - door[1]) * 0.98)
  wd = 0.4 * h * w.H / w.W
  dark = np.array([25, 25, 28], F32) + rng.uniform(0, 10)
  a1 = int(round(0.12 * L))
  a2 = max(a1 + 2, int(round(0.92 * L)))
  span = max(a2 - a1, 1)
  tau = np.arange(span, dtype=F32) / max(span - 1, 1)
  at_door = np.array([dcx, w.scene.wall_y - h / 2], F32)
  out = np.array([dcx + rng.choice([-1, 1]) * rng.uniform(0.08, 0.16),
                  w.scene.wall_y - 0.35 * h + rng.uniform(0.03, 0.09)], F32)
  frac = np.clip(np.minimum(tau / 0.4, (1 - tau) / 0.4), 0, 1)[:, None]
  pos = np.repeat(at_door[None], w.n, 0)
  b = min(s + a1 + span, e)
  pos[s + a1:b] = (at_door + (out - at_door) * frac)[:b - s - a1]
  pos[:, 0] = np.clip(pos[:, 0], wd / 2, 1 - wd / 2)
  vis = np.zeros(w.n, bool)
  vis[s + a1:b] = True
  slot = len(w.people) if len(w.people) < max_people else -1
  w.people.append(Person(h, wd, dark, dark * 0.8, dark * 1.2, pos, vis, np.zeros(w.n, bool), slot))
  w.under.append(lambda c: _fill(c, _frames(s, e), door, (18, 16, 14)))


def _fill(c, frames, box, color, pad_px=0.0):
  x0, y0, x1, y1 = [float(v) for v in box]
  p = Patch.around(c, frames, x0, y0, x1, y1)
  if p is None:
    return
  p.paint(p.rect(x0 * c.w - pad_px, y0 * c.h - pad_px, x1 * c.w + pad_px, y1 * c.h + pad_px), color)
  p.commit()


def _visit(w, p, s, e, rng, goal, k1, k2, speed_out):
  """Walk to goal (arrive at s+k1), linger until s+k2, then leave at speed_out."""
  L = e - s
  t = np.arange(L, dtype=F32)[:, None]
  v_in = walk_velocity(rng)
  v_out = _unit(walk_velocity(rng)) * speed_out
  seg = np.where(t < k1, goal - v_in * (k1 - t), goal)
  seg = np.where(t > k2, goal + v_out * (t - k2), seg)
  seg = seg + 0.003 * rng.standard_normal((L, 2)) * ((t >= k1) & (t <= k2))
  lo, hi = p.bounds(w.scene.wall_y)
  splice(w, p, s, e, reflect(seg, lo, hi), rng)


def shoplifting(w: World, s: int, e: int, rng) -> None:
  L = e - s
  T = _pick(w, rng, 1)[0]
  sc = w.scene
  top = sc.items[sc.top_items]
  k = rng.integers(len(top))
  gx = float(top[k, 0] + top[k, 2]) / 2
  goal = np.array([gx, sc.wall_y - 0.35 * T.h + rng.uniform(0, 0.02)], F32)
  k1, k2 = int(round(0.25 * L)), int(round(0.75 * L))
  _visit(w, T, s, e, rng, goal, k1, k2, rng.uniform(0.02, 0.03))
  order = np.argsort(np.abs((top[:, 0] + top[:, 2]) / 2 - gx))[:int(rng.integers(3, 5))]
  times = s + np.linspace(k1 + 1, max(k2, k1 + 1), len(order)).round().astype(int)
  for i, t0 in zip(order, times):
    box = top[i]
    w.under.append(lambda c, box=box, t0=t0: _fill(c, _frames(min(t0, e - 1), e), box, sc.shelf_bg, 0.7))


def stealing(w: World, s: int, e: int, rng) -> None:
  from vad_jax.data.scene import BAG_COLORS
  L = e - s
  T = _pick(w, rng, 1)[0]
  if w.bags:
    _, bpos, size, color = w.bags.pop()
    pb = bpos[0]
  else:
    size, color = w.bag_size(rng), BAG_COLORS[rng.integers(len(BAG_COLORS))]
    pb = np.array([rng.uniform(0.15, 0.85), rng.uniform(w.scene.wall_y + 0.1, 0.95)], F32)
  side = rng.choice([-1.0, 1.0])
  goal = np.array([pb[0] - side * 0.55 * T.w, pb[1] - T.h / 2], F32)
  k1 = int(round(0.3 * L))
  k2 = k1 + max(1, int(round(0.15 * L)))
  _visit(w, T, s, e, rng, goal, k1, k2, rng.uniform(0.03, 0.045))
  grab = min(s + k2, e)
  ground = np.arange(0, grab)
  w.bags.append((ground, np.repeat(pb[None], len(ground), 0), size, color))
  carried = np.arange(grab, e)
  hand = T.pos[carried] + np.array([side * 0.55 * T.w, 0.3 * T.h], F32)
  w.bags.append((carried, hand, size, color))


def vandalism(w: World, s: int, e: int, rng) -> None:
  L = e - s
  V = _pick(w, rng, 1)[0]
  wy = w.scene.wall_y
  x0 = rng.uniform(0.15, 0.85)
  goal = np.array([x0, wy - 0.35 * V.h + rng.uniform(0, 0.02)], F32)
  k1 = int(round(0.2 * L))
  _visit(w, V, s, e, rng, goal, k1, L, 0.01)
  V.pos[s + k1:e, 0] += 0.006 * np.sin(np.arange(e - s - k1) * 2.1)
  side = rng.choice([-1.0, 1.0])
  paint = np.array([(15, 15, 15), (170, 20, 25), (25, 45, 170), (25, 130, 40)], F32)[rng.integers(4, size=2)]
  K = int(rng.integers(5, 9))
  times = s + np.linspace(k1, L - 1, K).round().astype(int)
  for i, t0 in enumerate(times):
    mx = x0 + side * rng.uniform(0.03, 0.16)
    my = rng.uniform(0.15, 0.85) * wy
    ln, ang = w.at_least(rng.uniform(0.06, 0.14), 'w', 3.0), rng.uniform(0, np.pi)
    thick = w.at_least(rng.uniform(0.02, 0.03))
    seg = (mx - np.cos(ang) * ln / 2, my - np.sin(ang) * ln / 2, mx + np.cos(ang) * ln / 2, my + np.sin(ang) * ln / 2)
    w.under.append(lambda c, seg=seg, t0=t0, thick=thick, col=paint[i % 2]: _stroke(c, t0, e, seg, thick, col, wy))


def _stroke(c, t0, e, seg, thick, color, wy):
  H, W = c.h, c.w
  xa, ya, xb, yb = seg
  pad = thick
  p = Patch.around(c, np.arange(t0, e), min(xa, xb) - pad, min(ya, yb) - pad, max(xa, xb) + pad, max(ya, yb) + pad)
  a = p.segment(xa * W, ya * H, xb * W, yb * H, max(thick * H, 1.0)) * (p.Y < wy * H)
  p.paint(0.9 * a, color)
  p.commit()


def arrest(w: World, s: int, e: int, rng) -> None:
  L = e - s
  group = _pick(w, rng, 3)
  T, officers = group[0], group[1:]
  pt = T.pos[s].copy()
  lo, hi = T.bounds(w.scene.wall_y)
  pt = np.clip(pt, lo + [0.1, 0], hi - [0.1, 0])
  splice(w, T, s, e, pt + 0.002 * rng.standard_normal((L, 2)), rng)
  t = np.arange(L, dtype=F32)[:, None]
  ramp = np.clip(t / max(0.5 * L, 1), 0, 1)
  ramp = ramp * ramp * (3 - 2 * ramp)
  for side, O in zip((-1.0, 1.0), officers):
    o0 = O.pos[s].copy()
    goal = pt + np.array([side * 0.75 * (T.w + O.w) / 2, (O.h - T.h) / 2], F32)
    splice(w, O, s, e, o0 + (goal - o0) * ramp + 0.002 * rng.standard_normal((L, 2)), rng, keep_pre=True)
    O.uniform[s:e] = True
  bx, by = rng.uniform(0.08, 0.92), rng.uniform(w.scene.wall_y + 0.05, 0.92)
  rate = int(rng.integers(1, 3))
  cols = np.where(((np.arange(L) // rate) % 2 == 0)[:, None], np.array([320, 40, 40], F32), np.array([50, 70, 330], F32))

  def draw(c):
    H, W = c.h, c.w
    r = 0.07
    p = Patch.around(c, _frames(s, e), bx - r * H / W, by - r, bx + r * H / W, by + r)
    p.paint(0.75 * p.blob(bx * W, by * H, r * H, r * H, 1.3), cols)
    p.paint(p.rect(bx * W - 0.03 * H, by * H - 0.018 * H, bx * W + 0.03 * H, by * H + 0.018 * H), cols * 1.1)
    p.commit()
  w.over.append(draw)


EVENTS = {
    'Abuse': abuse, 'Arrest': arrest, 'Arson': arson, 'Assault': assault, 'Burglary': burglary,
    'Explosion': explosion, 'Fighting': fighting, 'RoadAccidents': road_accident, 'Robbery': robbery,
    'Shooting': shooting, 'Shoplifting': shoplifting, 'Stealing': stealing, 'Vandalism': vandalism,
}
