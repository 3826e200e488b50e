"""COCO box mAP for one category, in numpy: the numbers pycocotools' COCOeval prints, without it.

Re-implements `COCOeval.evaluateImg` + `accumulate` + `summarize` for iouType 'bbox', one
category, area range 'all' ([0, 1e10]) and maxDets `max_dets` (COCO: 100), no crowd boxes:

  * per image, detections sorted by score (descending, `kind='mergesort'`: ties keep their input
    order), then truncated to `max_dets`; ground truth with area outside [0, 1e10] (only possible
    for inverted boxes) is 'ignore' and sorted last;
  * greedy matching per IoU threshold t (0.50:0.05:0.95): in score order a detection takes the
    still-unmatched gt with the highest IoU >= min(t, 1 - 1e-10), preferring non-ignore gt; among
    equal IoUs the LAST gt wins (COCO's `if ious[d, g] < iou: continue`);
  * across images (in list order, = COCO's sorted image ids) detections sorted by score again
    (mergesort), cumulative TP / FP, precision = tp / (tp + fp + eps), made monotone from the
    right, read at recall thresholds linspace(0, 1, 101) with `searchsorted(side='left')` (0
    past the last recall reached);
  * precision / recall are -1 when there is no (non-ignore) gt; the summaries average the
    entries > -1 (-1 when none).

Images without gt and without detections contribute nothing; images without gt but with
detections contribute false positives. Parity with pycocotools is tested in
tests/test_coco_map.py (pycocotools is a test dependency only). `to_coco` writes the same data
as COCO JSON so anyone can recompute the numbers with pycocotools.

Boxes are (x0, y0, x1, y1); any unit (IoU is invariant to per-axis scaling), normalised in this
framework.
"""

from __future__ import annotations

import numpy as np

__all__ = ['IOU_THRESHOLDS', 'REC_THRESHOLDS', 'box_iou', 'evaluate', 'match_at', 'to_coco']

# Exactly COCOeval's Params.setDetParams values (summarize looks thresholds up by equality).
IOU_THRESHOLDS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
REC_THRESHOLDS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
AREA_ALL = (0.0, 1e5 ** 2)


def _as_boxes(b) -> np.ndarray:
  return np.asarray(b, np.float64).reshape(-1, 4)


def _area(b: np.ndarray) -> np.ndarray:
  """Signed area [N] of boxes [N, 4] (COCO: w * h, negative for an inverted box)."""
  return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def box_iou(a, b) -> np.ndarray:
  """IoU [Na, Nb] of boxes a [Na, 4] and b [Nb, 4] (x0, y0, x1, y1), as COCO's maskUtils.iou
  computes it for non-crowd boxes: no +1 pixel, 0 when the boxes do not overlap (width or height
  of the intersection <= 0), else inter / (area_a + area_b - inter)."""
  a, b = _as_boxes(a), _as_boxes(b)
  w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
  h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
  overlap = (w > 0) & (h > 0)
  inter = np.where(overlap, w * h, 0.0)
  union = _area(a)[:, None] + _area(b)[None, :] - inter
  with np.errstate(divide='ignore', invalid='ignore'):
    return np.where(overlap, inter / np.where(overlap, union, 1.0), 0.0)


def _last_argmax(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
  """Per row of values [T, G] restricted to ok [T, G]: index of the LAST maximum [T] (COCO's
  tie rule: a later gt with an equal IoU replaces the earlier one)."""
  masked = np.where(ok, values, -np.inf)
  return values.shape[1] - 1 - np.argmax(masked[:, ::-1], axis=1)


def _match(ious: np.ndarray, gt_ignore: np.ndarray, thresholds: np.ndarray):
  """COCOeval.evaluateImg's greedy matching. ious [D, G] (detections in score order, gt with
  ignore last), gt_ignore bool [G], thresholds [T] -> (matched bool [T, D], matched an ignore
  gt bool [T, D]). Sequential over detections, vectorised over thresholds and gt."""
  d, g = ious.shape
  t = len(thresholds)
  matched = np.zeros((t, d), bool)
  on_ignore = np.zeros((t, d), bool)
  if d == 0 or g == 0:
    return matched, on_ignore
  thr = np.minimum(thresholds, 1 - 1e-10)
  above = ious[:, None, :] >= thr[None, :, None]          # [D, T, G]
  taken = np.zeros((t, g), bool)
  regular = ~gt_ignore[None, :]
  any_ignore = bool(gt_ignore.any())
  rows = np.arange(t)
  for k in np.flatnonzero(above.any((1, 2))):
    ok = above[k] & ~taken
    row = np.broadcast_to(ious[k], (t, g))
    if any_ignore:
      reg = ok & regular
      has = reg.any(1)
      ign = ~has & ok.any(1)                    # no regular gt left above t: an ignore one may
      m = np.where(has, _last_argmax(row, reg), _last_argmax(row, ok))
      has = has | ign
      on_ignore[:, k] = ign
    else:
      has = ok.any(1)
      m = _last_argmax(row, ok)
    taken[rows[has], m[has]] = True
    matched[:, k] = has
  return matched, on_ignore


def _image(boxes, scores, gt, thresholds: np.ndarray, max_dets: int):
  """One image -> (scores [D] sorted, truncated; matched [T, D]; ignored [T, D]; gt ignore [G])."""
  boxes, gt = _as_boxes(boxes), _as_boxes(gt)
  scores = np.asarray(scores, np.float64).reshape(-1)
  if len(scores) != len(boxes):
    raise ValueError(f'{len(boxes)} detection boxes but {len(scores)} scores')
  order = np.argsort(-scores, kind='mergesort')[:max_dets]
  boxes, scores = boxes[order], scores[order]
  g_area = _area(gt)
  g_ig = (g_area < AREA_ALL[0]) | (g_area > AREA_ALL[1])
  g_order = np.argsort(g_ig, kind='mergesort')
  gt, g_ig = gt[g_order], g_ig[g_order]
  matched, ignored = _match(box_iou(boxes, gt), g_ig, thresholds)
  d_area = _area(boxes)
  outside = (d_area < AREA_ALL[0]) | (d_area > AREA_ALL[1])
  ignored = ignored | (~matched & outside[None, :])
  return scores, matched, ignored, g_ig


def _check_lists(dets, gts):
  if len(dets) != len(gts):
    raise ValueError(f'dets has {len(dets)} images but gts has {len(gts)}')


def evaluate(dets, gts, max_dets: int = 100, iou_thresholds=None) -> dict:
  """COCO bbox evaluation of one category.

  dets: one (boxes [K, 4], scores [K]) per image; gts: one boxes [G, 4] per image (same order).
  Returns {'map': AP@[.5:.95], 'map50', 'map75' (absent when 0.5 / 0.75 is not a threshold),
  'ar100': mean recall over thresholds (COCO's AR@maxDets, whatever max_dets is), 'precision'
  [T, 101] (-1 rows: no gt), 'recall' [T], 'iou_thresholds' [T], 'num_gt', 'num_dets'}.
  """
  _check_lists(dets, gts)
  thr = IOU_THRESHOLDS if iou_thresholds is None else np.asarray(iou_thresholds, np.float64)
  t, r = len(thr), len(REC_THRESHOLDS)
  per = [_image(b, s, g, thr, max_dets) for (b, s), g in zip(dets, gts)]
  scores = np.concatenate([p[0] for p in per]) if per else np.zeros(0)
  matched = np.concatenate([p[1] for p in per], 1) if per else np.zeros((t, 0), bool)
  ignored = np.concatenate([p[2] for p in per], 1) if per else np.zeros((t, 0), bool)
  npig = int(sum(np.count_nonzero(~p[3]) for p in per))
  precision = -np.ones((t, r))
  recall = -np.ones(t)
  if npig:
    order = np.argsort(-scores, kind='mergesort')
    matched, ignored = matched[:, order], ignored[:, order]
    tp = np.cumsum(matched & ~ignored, axis=1).astype(float)
    fp = np.cumsum(~matched & ~ignored, axis=1).astype(float)
    nd = tp.shape[1]
    rc = tp / npig
    pr = tp / (fp + tp + np.spacing(1))
    recall = rc[:, -1] if nd else np.zeros(t)
    if nd:
      pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
      for k in range(t):
        idx = np.searchsorted(rc[k], REC_THRESHOLDS, side='left')
        precision[k] = np.where(idx < nd, pr[k, np.minimum(idx, nd - 1)], 0.0)
    else:
      precision[:] = 0.0

  def mean(s):
    s = s[s > -1]
    return float(np.mean(s)) if s.size else -1.0

  out = {'map': mean(precision), 'ar100': mean(recall), 'precision': precision,
         'recall': recall, 'iou_thresholds': thr, 'num_gt': npig,
         'num_dets': int(scores.size)}
  for name, value in (('map50', 0.5), ('map75', 0.75)):
    hit = np.flatnonzero(np.isclose(thr, value, rtol=0, atol=1e-12))
    if hit.size:
      out[name] = mean(precision[hit[0]])
  return out


def match_at(dets, gts, score_threshold: float, iou: float = 0.5, max_dets: int = 100) -> dict:
  """Counts at one operating point: detections with score >= score_threshold (of the top
  `max_dets` an image), matched greedily at IoU >= `iou` exactly as `evaluate` does (so tp / fp
  are COCO's cumulative counts at that score).

  Returns {'tp', 'fp', 'fn' (ints), 'precision' = tp / max(tp + fp, 1) (0 with no detection),
  'recall' = tp / max(tp + fn, 1) (0 with no gt), 'f1' = 2 p r / (p + r) (0 when p + r = 0)}.
  """
  _check_lists(dets, gts)
  thr = np.array([iou], np.float64)
  tp = fp = fn = 0
  for (b, s), g in zip(dets, gts):
    scores, matched, ignored, g_ig = _image(b, s, g, thr, max_dets)
    keep = (scores >= score_threshold)[None, :] & ~ignored
    tp_i = int(np.count_nonzero(matched & keep))
    tp += tp_i
    fp += int(np.count_nonzero(~matched & keep))
    fn += int(np.count_nonzero(~g_ig)) - tp_i
  p = tp / max(tp + fp, 1)
  r = tp / max(tp + fn, 1)
  f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
  return {'tp': tp, 'fp': fp, 'fn': fn, 'precision': float(p), 'recall': float(r),
          'f1': float(f1)}


def to_coco(dets, gts, height, width, image_ids=None, category: str = 'person'):
  """The same data as COCO JSON: (ground-truth dataset dict, detection results list).

  Boxes are normalised (x0, y0, x1, y1), scaled to pixels by width / height (ints, or one per
  image); bbox = [x, y, w, h], gt area = w * h, iscrowd 0, category 1 = `category`. Every image is
  listed (also those without boxes), with id `image_ids[i]` (default i + 1; must increase, so
  COCO's sorted ids keep this order and its score ties break as here), annotation ids from 1.
  Recompute with pycocotools: `c = COCO(); c.dataset = gt; c.createIndex(); c.loadRes(dets)`
  (loadRes needs at least one detection).
  """
  _check_lists(dets, gts)
  n = len(gts)
  ids = np.arange(1, n + 1) if image_ids is None else np.asarray(image_ids).reshape(-1)
  if len(ids) != n:
    raise ValueError(f'{len(ids)} image_ids for {n} images')
  if n > 1 and not np.all(np.diff(ids) > 0):
    raise ValueError('image_ids must be strictly increasing (COCOeval orders images by id)')
  hs = np.broadcast_to(np.asarray(height), (n,))
  ws = np.broadcast_to(np.asarray(width), (n,))

  def xywh(b, w, h):
    b = _as_boxes(b) * np.array([w, h, w, h], np.float64)
    return [[float(x0), float(y0), float(x1 - x0), float(y1 - y0)] for x0, y0, x1, y1 in b]

  images, annotations, results = [], [], []
  for i, ((b, s), g) in enumerate(zip(dets, gts)):
    img = int(ids[i])
    images.append({'id': img, 'width': int(ws[i]), 'height': int(hs[i])})
    for bb in xywh(g, ws[i], hs[i]):
      annotations.append({'id': len(annotations) + 1, 'image_id': img, 'category_id': 1,
                          'bbox': bb, 'area': bb[2] * bb[3], 'iscrowd': 0})
    scores = np.asarray(s, np.float64).reshape(-1)
    for bb, sc in zip(xywh(b, ws[i], hs[i]), scores):
      results.append({'image_id': img, 'category_id': 1, 'bbox': bb, 'score': float(sc)})
  gt = {'info': {'description': 'vad_jax detection ground truth'}, 'images': images,
        'annotations': annotations,
        'categories': [{'id': 1, 'name': category, 'supercategory': category}]}
  return gt, results
