"""Severity-based heavy augmentation for minority classes (seed 002), host side (numpy + PIL).

Rarer classes get stronger, more frequent corruptions: `severity_from_counts` gives each class a
severity in [0, 1] (0 for the most frequent class, 1 for the rarest, log-scaled between);
`augment` corrupts one image [H, W, 3] uint8 with that severity; `random_map` runs it in grain
workers, looked up by the example's label:

  ds = ds.random_map(severity.random_map(severity.severity_from_counts(info.class_counts)))

Ops take float32 [H, W, 3] in 0..255, the `np.random.Generator` grain passes (deterministic per
example position) and a magnitude in [0, 1]: the magnitude sets the strength, the rng only the
direction and the pattern, and magnitude 0 returns the image itself. They run per training
example, so each is a few vectorised numpy calls or one PIL call (0.05-0.3 ms at 64x64).
Hand-written because albumentations and OpenCV are not kept dependencies (PIL does the warps,
JPEG and resizing; numpy the rest).

  python -m vad_jax.data.severity --out docs/augmentations.png [--size 64] [--seed 0]

renders every op at magnitudes 0.25 .. 1 and full `augment(..., severity=1)` draws.
"""
from __future__ import annotations

import argparse
import functools
import io
import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

F32 = np.float32
LUMA = np.array([0.299, 0.587, 0.114], F32)   # ITU-R BT.601 weights of R, G, B
LEVELS = {'none': 0.0, 'light': 0.33, 'medium': 0.66, 'heavy': 1.0}   # the seed used 'heavy'


def severity_from_counts(counts, level: str = 'heavy') -> np.ndarray:
  """counts [C] -> float32 [C]: LEVELS[level] * log(n_max / n_c) / log(n_max / n_min), counts
  clamped >= 1 (an empty class counts as 1, the rarest possible); all equal -> 0 everywhere."""
  if level not in LEVELS:
    raise ValueError(f'level must be one of {list(LEVELS)}, got {level!r}')
  n = np.maximum(np.asarray(counts, np.float64), 1.0)
  if n.ndim != 1 or n.size == 0:
    raise ValueError(f'counts must be a non-empty vector [C], got shape {n.shape}')
  span = np.log(n.max() / n.min())
  if span <= 0:
    return np.zeros(n.shape, F32)
  return (LEVELS[level] * np.log(n.max() / n) / span).astype(F32)


# ------------------------------------------------------------------------------------ the ops
OPS: dict = {}   # name -> op(image float32 [H, W, 3] 0..255, rng, magnitude in [0, 1]) -> same


def _op(fn):
  """Registers `fn` in OPS under its name: magnitude <= 0 returns the image itself (exactly),
  magnitude is clamped to 1, the result is float32 clipped to 0..255."""
  @functools.wraps(fn)
  def op(image, rng, magnitude):
    if magnitude <= 0:
      return image
    out = fn(np.asarray(image, F32), rng, min(float(magnitude), 1.0))
    return np.clip(out, 0, 255, dtype=F32)
  OPS[fn.__name__] = op
  return op


def _signed(rng, amount: float) -> float:
  """amount * U(0.5, 1) with a random sign: the magnitude sets the strength, the rng the way."""
  return float(amount * rng.uniform(0.5, 1.0) * (1 if rng.random() < 0.5 else -1))


def _to_pil(x) -> Image.Image:
  return Image.fromarray(np.rint(x).clip(0, 255).astype(np.uint8))


def _fill(x) -> tuple:
  """The mean colour as ints (a matmul: numpy's axis-0 mean of [H*W, 3] is 20x slower)."""
  flat = x.reshape(-1, 3)
  return tuple(int(round(v)) for v in np.ones(len(flat), F32) @ flat / len(flat))


def affine_matrix(height: int, width: int, angle: float = 0.0, scale: float = 1.0,
                  shear: float = 0.0, translate=(0.0, 0.0)) -> np.ndarray:
  """float64 [3, 3] forward map of pixel coordinates (x, y, 1): scale, shear (degrees, along x)
  and rotate (degrees, counter-clockwise on screen) about the image centre, then translate by
  (dx, dy) pixels (right, down). Composed in plain floats (5x cheaper than numpy 3x3 products,
  and it runs per example)."""
  c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
  sh = math.tan(math.radians(shear))
  l00, l01, l10, l11 = scale * c, scale * (c * sh + s), -scale * s, scale * (c - s * sh)
  cx, cy = width / 2, height / 2
  return np.array([[l00, l01, cx + translate[0] - l00 * cx - l01 * cy],
                   [l10, l11, cy + translate[1] - l10 * cx - l11 * cy], [0.0, 0.0, 1.0]])


def warp_affine(image, matrix) -> np.ndarray:
  """float32 [H, W, 3] -> the image moved by the forward affine `matrix` [3, 3] (bilinear;
  uncovered pixels take the image's mean colour)."""
  (a, b, tx), (c, d, ty) = np.asarray(matrix, np.float64)[:2].tolist()
  det = a * d - b * c
  ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det        # PIL wants output -> input
  inv = (ia, ib, -(ia * tx + ib * ty), ic, id_, -(ic * tx + id_ * ty))
  out = _to_pil(image).transform(image.shape[1::-1], Image.AFFINE, inv, Image.BILINEAR,
                                 fillcolor=_fill(image))
  return np.asarray(out, F32)


@_op
def affine(x, rng, m):
  """Rotation up to 15 deg, scale 1 +- 0.15, shear up to 8 deg, shift up to 8% of the size."""
  H, W = x.shape[:2]
  t = m * 0.08 * min(H, W) * rng.uniform(0.5, 1.0)
  d = rng.uniform(0, 2 * np.pi)
  return warp_affine(x, affine_matrix(H, W, _signed(rng, 15 * m), 1 + _signed(rng, 0.15 * m),
                                      _signed(rng, 8 * m), (t * np.cos(d), t * np.sin(d))))


@_op
def perspective(x, rng, m):
  """Each corner moved independently by up to 15% of the size (a tilted camera)."""
  H, W = x.shape[:2]
  dst = np.array([[0, 0], [W, 0], [W, H], [0, H]], np.float64)          # output corners
  src = dst + rng.uniform(-1, 1, (4, 2)) * m * 0.15 * min(H, W)         # where they look
  A = np.zeros((8, 8))
  for i, ((x0, y0), (u, v)) in enumerate(zip(dst, src)):
    A[2 * i] = [x0, y0, 1, 0, 0, 0, -x0 * u, -y0 * u]
    A[2 * i + 1] = [0, 0, 0, x0, y0, 1, -x0 * v, -y0 * v]
  coeffs = np.linalg.solve(A, src.ravel())
  out = _to_pil(x).transform((W, H), Image.PERSPECTIVE, tuple(coeffs), Image.BILINEAR,
                             fillcolor=_fill(x))
  return np.asarray(out, F32)


@functools.lru_cache(maxsize=16)
def _upsample_matrix(n: int, g: int) -> np.ndarray:
  """[n, g] linear interpolation from g grid nodes spanning [0, n-1] to n positions."""
  pos = np.linspace(0, g - 1, n)
  r = np.stack([np.interp(pos, np.arange(g), np.eye(g)[k]) for k in range(g)], 1).astype(F32)
  r.setflags(write=False)                       # cached: shared by every call
  return r


def sample_bilinear(image, yy, xx) -> np.ndarray:
  """image [H, W, C] at float pixel coordinates yy, xx [h, w] -> [h, w, C]; coordinates outside
  are clamped to the border (edge padding). Works on channel planes [C, H*W]: numpy broadcasts
  [N, 1] weights over a last axis of 3 several times slower."""
  H, W, C = image.shape
  yy = np.clip(yy, 0, H - 1, dtype=F32)
  xx = np.clip(xx, 0, W - 1, dtype=F32)
  y0 = np.minimum(yy.astype(np.int32), max(H - 2, 0))
  x0 = np.minimum(xx.astype(np.int32), max(W - 2, 0))
  wy = (yy - y0.astype(F32)).ravel()           # float32 - int32 would be float64
  wx = (xx - x0.astype(F32)).ravel()
  i = (y0 * W + x0).ravel().astype(np.intp)     # take converts to intp anyway: once, not 4x
  dy, dx = (W if H > 1 else 0), (1 if W > 1 else 0)
  planes = np.ascontiguousarray(image.reshape(-1, C).T)
  a, b, c, d = (planes.take(i + k, 1) for k in (0, dx, dy, dy + dx))
  top = a + (b - a) * wx
  bot = c + (d - c) * wx
  return np.ascontiguousarray((top + (bot - top) * wy).T).reshape(*yy.shape, C)


@functools.lru_cache(maxsize=16)
def _pixel_grid(h: int, w: int) -> np.ndarray:
  """float32 [2, h, w] row and column of every pixel (cached, read-only)."""
  g = np.mgrid[:h, :w].astype(F32)
  g.setflags(write=False)
  return g


@_op
def elastic(x, rng, m, grid: int = 5):
  """A smooth random displacement field: a grid x grid lattice of U(-1, 1) offsets, upsampled
  bilinearly, of amplitude m * 6% of the size (3.8 px at 64)."""
  H, W = x.shape[:2]
  amp = m * 0.06 * min(H, W)
  ry, rx = _upsample_matrix(H, grid), _upsample_matrix(W, grid)
  d = rng.uniform(-amp, amp, (2, grid, grid)).astype(F32)
  dy, dx = ry @ d[0] @ rx.T, ry @ d[1] @ rx.T
  yy, xx = _pixel_grid(H, W)
  return sample_bilinear(x, yy + dy, xx + dx)


@_op
def color(x, rng, m):
  """Brightness x b, then contrast c about the mean grey, then saturation s about each pixel's
  grey (BT.601 luma), with b, c, s = 1 +- 0.4m, 1 +- 0.4m, 1 +- 0.6m. All three are affine in
  x, so they fold into one scale of x plus one grey image: s c b x + (1 - s) c b luma +
  (1 - c) mean, mean = b mean(luma) (a third of the array passes of doing them in turn)."""
  b, c, s = (1 + _signed(rng, k * m) for k in (0.4, 0.4, 0.6))
  luma = x @ LUMA                                           # [H, W]
  mean = float(luma.mean()) * b                             # mean grey after brightness
  grey = luma * F32((1 - s) * c * b) + F32((1 - c) * mean)
  return x * F32(s * c * b) + np.repeat(grey[..., None], 3, -1)


@_op
def gaussian(x, rng, m):
  """Additive white noise, sigma 20m grey levels, independent per channel."""
  return x + rng.standard_normal(x.shape, F32) * F32(20 * m)


@_op
def iso(x, rng, m):
  """Sensor (ISO) noise: sigma 1.6m sqrt(intensity) (shot noise; 26 grey levels at 255), as
  per-pixel luminance grain shared by the channels plus half as much chroma noise in 2x2
  blotches (as demosaicing leaves it; also 4x fewer normal draws)."""
  H, W, _ = x.shape
  lum = rng.standard_normal((H, W, 1), F32)
  chroma = rng.standard_normal(((H + 1) // 2, (W + 1) // 2, 3), F32)
  chroma = chroma.repeat(2, 0).repeat(2, 1)[:H, :W]
  return x + F32(1.6 * m) * np.sqrt(x) * (lum + F32(0.5) * chroma)


@_op
def multiplicative(x, rng, m):
  """Speckle: each pixel scaled by 1 + 0.2m N(0, 1), the same for its three channels."""
  H, W, _ = x.shape
  return x * (1 + F32(0.2 * m) * rng.standard_normal((H, W, 1), F32))


@_op
def fog(x, rng, m):
  """Blend towards a light grey, more at the top (far away) than at the bottom (near): alpha
  falls smoothly from m * U(0.6, 0.8) to m * U(0.15, 0.35)."""
  H = x.shape[0]
  top, bottom = rng.uniform(0.6, 0.8), rng.uniform(0.15, 0.35)
  t = np.linspace(0, 1, H, dtype=F32) ** F32(rng.uniform(0.7, 1.5))
  alpha = (m * (top + (bottom - top) * t)).astype(F32)[:, None, None]
  grey = F32(rng.uniform(195, 235))
  return x + alpha * (grey - x)


@_op
def rain(x, rng, m):
  """Thin bright streaks, all slanted by one wind angle (+-25 deg), one per 50 pixels at m=1,
  over a scene dimmed by up to 12%. Only the streak pixels are blended (a few hundred)."""
  H, W = x.shape[:2]
  n = max(1, int(round(m * H * W / 50)))
  length = max(2, int(round(rng.uniform(0.08, 0.16) * H)))
  slant = np.tan(np.deg2rad(rng.uniform(-25, 25)))
  t = np.arange(length, dtype=F32)
  y0 = rng.uniform(-length, H, n).astype(F32)
  x0 = rng.uniform(min(0, -slant * length), W + max(0, -slant * length), n).astype(F32)
  ys = np.rint(y0[:, None] + t).astype(np.int32).ravel()
  xs = np.rint(x0[:, None] + t * slant).astype(np.int32).ravel()
  ok = (ys >= 0) & (ys < H) & (xs >= 0) & (xs < W)
  k = ys[ok] * W + xs[ok]                        # repeats write the same value
  x = x * F32(1 - 0.12 * m)
  flat = x.reshape(-1, 3)
  flat[k] += F32(0.45 + 0.35 * m) * (np.array([205, 210, 220], F32) - flat[k])
  return x


@_op
def shadow(x, rng, m):
  """A soft-edged random polygon (3-5 vertices around a point inside the image) darkened by
  up to 60%."""
  H, W = x.shape[:2]
  k = int(rng.integers(3, 6))
  ang = np.sort(rng.uniform(0, 2 * np.pi, k))
  r = rng.uniform(0.25, 0.6, k) * max(H, W)
  cx, cy = rng.uniform(0.2, 0.8) * W, rng.uniform(0.2, 0.8) * H
  mask = Image.new('L', (W, H), 0)
  ImageDraw.Draw(mask).polygon(list(zip(cx + r * np.cos(ang), cy + r * np.sin(ang))), fill=255)
  mask = np.asarray(mask.filter(ImageFilter.BoxBlur(1)), F32) * F32(1 / 255)
  return x * (1 - F32(0.6 * m) * mask[..., None])


@_op
def jpeg(x, rng, m):
  """JPEG encode and decode at quality 90 - 80m (10 at m=1). Decoded straight by PIL's JPEG
  decoder: Image.open's format sniffing costs twice the decode itself."""
  buf = io.BytesIO()
  _to_pil(x).save(buf, 'JPEG', quality=int(round(90 - 80 * m)))
  return np.asarray(Image.frombytes('RGB', x.shape[1::-1], buf.getvalue(), 'jpeg', 'RGB', ''), F32)


@_op
def downscale(x, rng, m):
  """Resize down by 1 + 3m (antialiased) and back up, nearest or bilinear (drawn)."""
  H, W = x.shape[:2]
  f = 1 + 3 * m
  small = _to_pil(x).resize((max(1, round(W / f)), max(1, round(H / f))), Image.BILINEAR)
  up = Image.NEAREST if rng.random() < 0.5 else Image.BILINEAR
  return np.asarray(small.resize((W, H), up), F32)


# Applied in this order (camera geometry, scene, sensor, compression), each family with
# probability severity * FAMILY_PROB[family], one op of it drawn uniformly.
FAMILIES = {
    'geometric': ('affine', 'perspective', 'elastic'),
    'weather': ('fog', 'rain', 'shadow'),
    'color': ('color',),
    'noise': ('gaussian', 'iso', 'multiplicative'),
    'quality': ('jpeg', 'downscale'),
}
FAMILY_PROB = {'geometric': 0.6, 'weather': 0.5, 'color': 0.8, 'noise': 0.6, 'quality': 0.5}


def augment(image, rng: np.random.Generator, severity: float) -> np.ndarray:
  """uint8 [H, W, 3] -> uint8 [H, W, 3]: each family in FAMILIES order with probability
  severity * FAMILY_PROB, one of its ops at magnitude severity * U(0.5, 1). Severity 0 returns
  `image` itself; the result is a function of the image, severity and rng state."""
  severity = float(severity)
  if not 0 <= severity <= 1:
    raise ValueError(f'severity must be in [0, 1], got {severity}')
  if severity == 0:
    return image
  x = np.asarray(image, F32)
  for family, names in FAMILIES.items():
    if rng.random() < severity * FAMILY_PROB[family]:
      name = names[int(rng.integers(len(names)))]
      x = OPS[name](x, rng, severity * rng.uniform(0.5, 1.0))
  return np.rint(x).clip(0, 255).astype(np.uint8)


def _augment_example(example: dict, rng: np.random.Generator, class_severity, field: str) -> dict:
  s = class_severity[int(example['label'])]
  return dict(example, **{field: augment(example[field], rng, s)})


def random_map(class_severity, field: str = 'image'):
  """-> grain random map (example, rng) -> example with example[field] (uint8 [H, W, 3])
  augmented at class_severity[example['label']] (class_severity [C] in [0, 1]). A partial of a
  module function, so it pickles into grain worker processes."""
  sev = np.asarray(class_severity, np.float64)
  if sev.ndim != 1 or np.any(sev < 0) or np.any(sev > 1):
    raise ValueError(f'class_severity must be a vector [C] in [0, 1], got {class_severity!r}')
  return functools.partial(_augment_example, class_severity=tuple(float(s) for s in sev),
                           field=field)


# ------------------------------------------------------------------------------------ preview
MAGNITUDES = (0.25, 0.5, 0.75, 1.0)


def source_image(size: int = 64) -> np.ndarray:
  """uint8 [size, size, 3]: frame 4 of the first built-in synthetic training video."""
  from vad_jax.data.synthetic import SyntheticSpec, SyntheticVideos
  spec = SyntheticSpec(height=size, width=size, num_frames=8, num_videos=4)
  return SyntheticVideos(spec, 'train')[0]['frames'][4]


def make_grid(size: int = 64, seed: int = 0, draws: int = 8):
  """-> (rows of (label, [original, op at each of MAGNITUDES] uint8 [H, W, 3])) for every op
  (one rng seed a row, so only the magnitude changes along it), then `augment` draws at
  severity 1 in rows of len(MAGNITUDES), each after the original."""
  image = source_image(size)
  family = {n: f for f, names in FAMILIES.items() for n in names}
  rows = []
  for r, name in enumerate(OPS):
    cells = [OPS[name](image.astype(F32), np.random.default_rng([seed, r]), mag) for mag in MAGNITUDES]
    rows.append((f'{name}\n({family[name]})',
                 [image] + [np.clip(np.rint(c), 0, 255).astype(np.uint8) for c in cells]))
  rng = np.random.default_rng([seed, len(OPS)])
  k = len(MAGNITUDES)
  for _ in range(0, draws, k):
    rows.append(('augment\nseverity 1', [image] + [augment(image, rng, 1.0) for _ in range(k)]))
  return rows


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--out', default='docs/augmentations.png')
  ap.add_argument('--size', type=int, default=64)
  ap.add_argument('--seed', type=int, default=0)
  args = ap.parse_args(argv)

  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  rows = make_grid(args.size, args.seed)
  cols = 1 + len(MAGNITUDES)
  fig, axes = plt.subplots(len(rows), cols, figsize=(1.5 * cols + 1.2, 1.5 * len(rows)), squeeze=False)
  for r, (label, cells) in enumerate(rows):
    for k, cell in enumerate(cells):
      ax = axes[r, k]
      ax.imshow(cell, interpolation='nearest')
      ax.set_xticks([]); ax.set_yticks([])
    axes[r, 0].set_ylabel(label, fontsize=8, rotation=0, ha='right', va='center')
  for k, title in enumerate(['original'] + [f'magnitude {m:g}' for m in MAGNITUDES]):
    axes[0, k].set_title(title, fontsize=8)
  axes[len(OPS), 1].set_title('augment draws', fontsize=8)
  fig.suptitle(f'vad_jax severity augmentation ({args.size}x{args.size}, seed {args.seed})', fontsize=9)
  fig.tight_layout(rect=(0, 0, 1, 0.99))
  out = os.path.abspath(args.out)
  os.makedirs(os.path.dirname(out), exist_ok=True)
  tmp = f'{out}.tmp{os.getpid()}'
  try:
    fig.savefig(tmp, dpi=90, format='png')
    os.replace(tmp, out)
  finally:
    plt.close(fig)
    if os.path.exists(tmp):
      os.remove(tmp)
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
