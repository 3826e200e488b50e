"""Trivial person-detection baselines (no learning) on exactly the split seed 004's detector uses.

  python benchmarks/detection_baseline.py [--variant=local] [--seeds 0 1 2] [--out=FILE.json]

Builds `configs/detector.py:<variant>` (config.seed = the data seed), takes the validation and
test sources of `vad_jax.data.sources.make` ('person_frames': the same K frames per video and the
same gt boxes the trained detector is scored on) and boxes the moving / foreground blobs of each
frame. Every video of a split is rendered once (all its T frames); only the K evaluated frames
are boxed.

Foreground strength per pixel (uint8, max over the 3 channels):
  background   |frame_t - background|, background = the video's per-pixel median over its T
               frames (fixed camera; the people walk, so the median is mostly the empty scene)
  difference   max(|frame_t - frame_{t-1}|, |frame_t - frame_{t+1}|) (only the existing
               neighbour at t = 0 / T - 1)
Boxes: strength > thr, binary opening then closing (3x3 square, per frame), 8-connected
components (scipy.ndimage.label / find_objects), a box (the component's pixel extent,
normalised x0, y0, x1, y1) per component with area >= min_area pixels; score = the component's
area in pixels (bigger blobs first; a person is ~10x25 px at 128x128, noise specks are small).
No NMS (components do not overlap), at most 100 boxes an image (COCO's maxDets).

Model selection on VALIDATION only: (thr, min_area) of each method by grid search on
validation mAP@0.5 (ties: the first in grid order), then the score threshold of best F1 (IoU
0.5) on validation. With score = area, min_area only drops the lowest-scoring tail, which
cannot raise AP, so validation picks the smallest min_area (the 3x3 opening already removes
blobs under 9 px); the score threshold is the operating point that matters for P / R. Test reports
mAP@0.5, COCO mAP@[.5:.95] (vad_jax.evaluate.coco.evaluate) and precision / recall / F1 at that
score threshold (coco.match_at). Prints per seed and mean +- sd (ddof=1) over seeds, as a
markdown table, and the chosen settings; `--out` writes everything as JSON.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
from scipy import ndimage

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

METHODS = ('background', 'difference')
THRESHOLDS = (3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60)   # on uint8 strength
MIN_AREAS = (4, 8, 16, 24, 32, 48, 64, 96, 128)           # pixels
MAX_DETS = 100
_SQUARE = np.ones((1, 3, 3), bool)                         # per frame (no link across frames)
_LINK = np.zeros((3, 3, 3), bool)                          # 8-connected within a frame only
_LINK[1] = True


def strengths(src) -> tuple[dict, list]:
  """One split -> ({method: uint8 [N, H, W]} foreground strength of the N = videos x K evaluated
  frames, in the source's example order), [N] gt boxes [G, 4]). Renders every video once."""
  t_idx = np.asarray(src.frame_index)
  n_vid, k = len(src.videos), len(t_idx)
  h, w = src.spec.height, src.spec.width
  out = {m: np.empty((n_vid * k, h, w), np.uint8) for m in METHODS}
  gts = []
  for v in range(n_vid):
    video = src.videos[v]
    x = video['frames'].astype(np.int16)                   # [T, H, W, 3]
    bg = np.median(x, axis=0).astype(np.int16)
    out['background'][v * k:(v + 1) * k] = np.abs(x[t_idx] - bg).max(-1)
    d = np.abs(np.diff(x, axis=0)).max(-1)                 # [T-1, H, W]: |x_t - x_{t-1}|, t >= 1
    prev = np.concatenate([d[:1], d])                      # t = 0: only the next frame
    nxt = np.concatenate([d, d[-1:]])                      # t = T-1: only the previous frame
    out['difference'][v * k:(v + 1) * k] = np.maximum(prev, nxt)[t_idx]
    for t in t_idx:                                        # = src.boxes() (pack_boxes keeps order)
      gts.append(video['boxes'][t][video['box_valid'][t]].astype(np.float64))
  return out, gts


def components(strength: np.ndarray, thr: int):
  """uint8 [N, H, W] -> (frame [C], boxes [C, 4] normalised, area [C]) of every component."""
  n, h, w = strength.shape
  mask = strength > thr
  mask = ndimage.binary_opening(mask, structure=_SQUARE)
  mask = ndimage.binary_closing(mask, structure=_SQUARE)
  lab, c = ndimage.label(mask, structure=_LINK)
  if c == 0:
    return np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0)
  area = np.bincount(lab.ravel(), minlength=c + 1)[1:].astype(np.float64)
  sl = ndimage.find_objects(lab)
  ext = np.array([(s[0].start, s[2].start, s[1].start, s[2].stop, s[1].stop) for s in sl],
                 np.float64)
  boxes = ext[:, 1:] / np.array([w, h, w, h], np.float64)
  return ext[:, 0].astype(np.int64), boxes, area


def detections(comp, n: int, min_area: int) -> list:
  """Components -> per image (boxes [K, 4], scores [K]) of those with area >= min_area."""
  frame, boxes, area = comp
  keep = area >= min_area
  frame, boxes, area = frame[keep], boxes[keep], area[keep]
  cuts = np.searchsorted(frame, np.arange(n + 1))          # find_objects: labels in frame order
  return [(boxes[a:b], area[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]


def best_f1_threshold(dets, gts) -> tuple[float, float]:
  """(score threshold, F1) of the best F1 at IoU 0.5 over every score seen (keep >= thr), from
  the same greedy matching `coco.match_at` uses (one pass, cumulative counts)."""
  from vad_jax.evaluate import coco
  thr = np.array([0.5])
  scores, tps = [], []
  n_gt = 0
  for (b, s), g in zip(dets, gts):
    sc, matched, ignored, g_ig = coco._image(b, s, g, thr, MAX_DETS)  # noqa: SLF001
    keep = ~ignored[0]
    scores.append(sc[keep])
    tps.append(matched[0][keep])
    n_gt += int(np.count_nonzero(~g_ig))
  scores, tps = np.concatenate(scores), np.concatenate(tps)
  if scores.size == 0:
    return float('inf'), 0.0
  order = np.argsort(-scores, kind='mergesort')
  scores, tps = scores[order], tps[order]
  tp = np.cumsum(tps)
  fp = np.cumsum(~tps)
  last = np.r_[scores[1:] != scores[:-1], True]            # thresholds at distinct scores
  p = tp / np.maximum(tp + fp, 1)
  r = tp / max(n_gt, 1)
  f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)
  f1 = np.where(last, f1, -1.0)
  i = int(np.argmax(f1))
  return float(scores[i]), float(f1[i])


def run_seed(variant: str, seed: int) -> dict:
  from configs import detector
  from vad_jax.data import sources
  from vad_jax.evaluate import coco
  config = detector.get_config(variant)
  config.seed = seed
  if config.data.source != 'person_frames':
    raise ValueError(f'configs/detector.py:{variant} has data.source={config.data.source!r}; '
                     "this baseline needs the built-in 'person_frames'")
  t0 = time.time()
  val, val_gts = strengths(sources.make(config, 'validation'))
  test, test_gts = strengths(sources.make(config, 'test'))
  t_render = time.time() - t0
  out = {'seed': seed, 'render_s': t_render, 'num_validation_images': len(val_gts),
         'num_test_images': len(test_gts)}
  for m in METHODS:
    best = None
    for thr in THRESHOLDS:                                 # validation only
      comp = components(val[m], thr)
      for min_area in MIN_AREAS:
        ap = coco.evaluate(detections(comp, len(val_gts), min_area), val_gts, max_dets=MAX_DETS)
        if best is None or ap['map50'] > best[0]:
          best = (ap['map50'], thr, min_area)
    val_map50, thr, min_area = best
    val_dets = detections(components(val[m], thr), len(val_gts), min_area)
    score_thr, val_f1 = best_f1_threshold(val_dets, val_gts)
    test_dets = detections(components(test[m], thr), len(test_gts), min_area)
    ap = coco.evaluate(test_dets, test_gts, max_dets=MAX_DETS)
    pr = coco.match_at(test_dets, test_gts, score_thr, max_dets=MAX_DETS)
    out[m] = {'thr': thr, 'min_area': min_area, 'score_threshold': score_thr,
              'val_map50': float(val_map50), 'val_f1': val_f1,
              'map50': float(ap['map50']), 'map': float(ap['map']),
              'precision': pr['precision'], 'recall': pr['recall'], 'f1': pr['f1'],
              'dets_per_image': ap['num_dets'] / max(len(test_gts), 1)}
  out['total_s'] = time.time() - t0
  return out


KEYS = (('map50', 'test mAP@0.5'), ('map', 'test mAP@[.5:.95]'), ('precision', 'P'),
        ('recall', 'R'), ('f1', 'F1'))


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--variant', default='local', help="configs/detector.py variant ('' = full)")
  p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2], help='data seeds')
  p.add_argument('--out', default='', help='write the numbers to this JSON file')
  args = p.parse_args()
  t0 = time.time()
  rows = []
  for seed in args.seeds:
    r = run_seed(args.variant, seed)
    rows.append(r)
    print(f'seed {seed} ({r["total_s"]:.1f} s, rendering {r["render_s"]:.1f} s): ' + '  '.join(
        f'{m} thr={r[m]["thr"]} min_area={r[m]["min_area"]} score>={r[m]["score_threshold"]:g} '
        f'(val mAP50 {r[m]["val_map50"]:.4f})' for m in METHODS), flush=True)

  summary = {}
  print()
  print('| method | seed | ' + ' | '.join(name for _, name in KEYS) + ' |')
  print('|---|---|' + '---|' * len(KEYS))
  for m in METHODS:
    for r in rows:
      print(f'| {m} | {r["seed"]} | ' + ' | '.join(f'{r[m][k]:.4f}' for k, _ in KEYS) + ' |')
    summary[m] = {}
    for k, _ in KEYS:
      v = np.array([r[m][k] for r in rows], np.float64)
      summary[m][k] = {'mean': float(v.mean()),
                       'sd': float(v.std(ddof=1)) if len(v) > 1 else 0.0}
    print(f'| {m} | mean ± sd | ' + ' | '.join(
        f'{summary[m][k]["mean"]:.4f} ± {summary[m][k]["sd"]:.4f}' for k, _ in KEYS) + ' |')
  print()
  print('chosen on validation (thr on uint8 strength, min_area in px, score = blob area px):')
  for m in METHODS:
    print(f'  {m}: ' + ', '.join(
        f'seed {r["seed"]}: thr {r[m]["thr"]} min_area {r[m]["min_area"]} '
        f'score>={r[m]["score_threshold"]:g}' for r in rows))
  wall = time.time() - t0
  print(f'\nwall time {wall:.1f} s ({len(rows)} seeds, variant {args.variant or "full"!r})')
  if args.out:
    with open(args.out, 'w') as f:
      json.dump({'variant': args.variant, 'seeds': list(args.seeds), 'per_seed': rows,
                 'summary': summary, 'wall_s': wall,
                 'grid': {'thr': list(THRESHOLDS), 'min_area': list(MIN_AREAS)}}, f, indent=1)
    print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
