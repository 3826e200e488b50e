"""Render a PNG grid previewing one synthetic video per class.

  python -m vad_jax.data.preview --out docs/synthetic_classes.png [--height 96 --width 96 --frames_per_class 6]

One row per class (motion-only classes are marked with '*'); columns are frames sampled
evenly across the anomaly window (across the whole video for Normal).
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from vad_jax.classes import CLASS_NAMES, MOTION_ONLY_CLASSES
from vad_jax.data.synthetic import SyntheticSpec, SyntheticVideos


def find_examples(ds: SyntheticVideos) -> dict[int, int]:
  """class id -> first index with that label."""
  found: dict[int, int] = {}
  for i, lab in enumerate(ds.labels()):
    found.setdefault(int(lab), i)
  return found


def make_grid(height: int = 96, width: int = 96, frames_per_class: int = 6, num_frames: int = 48,
              seed: int = 0, split: str = 'train'):
  """Returns (list of (class name, frames [F, H, W, 3], frame ids)) for all classes found."""
  spec = SyntheticSpec(height=height, width=width, num_frames=num_frames, num_videos=2000, seed=seed)
  ds = SyntheticVideos(spec, split)
  found = find_examples(ds)
  rows = []
  for c, name in enumerate(CLASS_NAMES):
    if c not in found:
      continue
    ex = ds[found[c]]
    where = np.nonzero(ex['mask'])[0]
    lo, hi = (where[0], where[-1]) if where.size else (0, num_frames - 1)
    ids = np.linspace(lo, hi, frames_per_class).round().astype(int)
    rows.append((name, ex['frames'][ids], ids, found[c], ex))
  return rows


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--out', default='docs/synthetic_classes.png')
  ap.add_argument('--height', type=int, default=96)
  ap.add_argument('--width', type=int, default=96)
  ap.add_argument('--frames_per_class', type=int, default=6)
  ap.add_argument('--num_frames', type=int, default=48)
  ap.add_argument('--seed', type=int, default=0)
  ap.add_argument('--boxes', action='store_true', help='overlay person boxes')
  args = ap.parse_args(argv)

  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  from matplotlib.patches import Rectangle

  rows = make_grid(args.height, args.width, args.frames_per_class, args.num_frames, args.seed)
  F = args.frames_per_class
  fig, axes = plt.subplots(len(rows), F, figsize=(1.6 * F + 1.6, 1.6 * len(rows)), squeeze=False)
  for r, (name, frames, ids, vid, ex) in enumerate(rows):
    for k in range(F):
      ax = axes[r, k]
      ax.imshow(frames[k], interpolation='nearest')
      ax.set_xticks([]); ax.set_yticks([])
      ax.set_title(f'#{vid} t={ids[k]}', fontsize=6, pad=1)
      if args.boxes:
        for b, v in zip(ex['boxes'][ids[k]], ex['box_valid'][ids[k]]):
          if v:
            ax.add_patch(Rectangle((b[0] * args.width - 0.5, b[1] * args.height - 0.5),
                                   (b[2] - b[0]) * args.width, (b[3] - b[1]) * args.height,
                                   fill=False, lw=0.5, ec='yellow'))
    label = name + (' *' if name in MOTION_ONLY_CLASSES else '')
    axes[r, 0].set_ylabel(label, fontsize=8, rotation=0, ha='right', va='center')
  fig.suptitle('vad_jax synthetic surveillance classes (frames across the anomaly window; * = motion only)',
               fontsize=9)
  fig.tight_layout(rect=(0, 0, 1, 0.985))
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  fig.savefig(args.out, dpi=90)
  plt.close(fig)
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
