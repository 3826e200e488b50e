"""vad_jax.evaluate.coco against pycocotools' COCOeval (bbox, one category, area all, maxDets
100): random, empty, crowded and > 100-detection images; box_iou, match_at and to_coco."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vad_jax.evaluate import coco


def coco_eval(dets, gts, size=(100.0, 100.0)):
  """COCOeval on pixel (x0, y0, x1, y1) boxes, JSON built here (independently of to_coco):
  (stats [12], precision [T, 101] at maxDets 100, recall [T])."""
  images, anns, res = [], [], []
  for i, ((b, s), g) in enumerate(zip(dets, gts)):
    images.append({'id': i + 1, 'width': size[1], 'height': size[0]})
    for x0, y0, x1, y1 in np.asarray(g, float).reshape(-1, 4):
      anns.append({'id': len(anns) + 1, 'image_id': i + 1, 'category_id': 1, 'iscrowd': 0,
                   'bbox': [x0, y0, x1 - x0, y1 - y0], 'area': (x1 - x0) * (y1 - y0)})
    for (x0, y0, x1, y1), sc in zip(np.asarray(b, float).reshape(-1, 4), np.asarray(s, float)):
      res.append({'image_id': i + 1, 'category_id': 1, 'bbox': [x0, y0, x1 - x0, y1 - y0],
                  'score': float(sc)})
  with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO()
    gt.dataset = {'images': images, 'annotations': anns,
                  'categories': [{'id': 1, 'name': 'person'}]}
    gt.createIndex()
    e = COCOeval(gt, gt.loadRes(res), 'bbox')
    e.evaluate()
    e.accumulate()
    e.summarize()
  return e.stats, e.eval['precision'][:, :, 0, 0, 2], e.eval['recall'][:, 0, 0, 2]


def assert_parity(dets, gts):
  stats, precision, recall = coco_eval(dets, gts)
  ours = coco.evaluate(dets, gts)
  assert ours['map'] == pytest.approx(stats[0], abs=1e-10)
  assert ours['map50'] == pytest.approx(stats[1], abs=1e-10)
  assert ours['map75'] == pytest.approx(stats[2], abs=1e-10)
  assert ours['ar100'] == pytest.approx(stats[8], abs=1e-10)
  np.testing.assert_allclose(ours['precision'], precision, atol=1e-10)
  np.testing.assert_allclose(ours['recall'], recall, atol=1e-10)
  return ours


def random_boxes(rng, n, size=100.0, lo=4.0, hi=40.0):
  xy = rng.uniform(0, size - hi, (n, 2))
  wh = rng.uniform(lo, hi, (n, 2))
  return np.concatenate([xy, xy + wh], 1)


def jitter(rng, boxes, scale):
  wh = np.tile(boxes[:, 2:] - boxes[:, :2], 2)
  return boxes + rng.normal(0, scale, boxes.shape) * wh


def scene(rng, n_gt, n_fp, miss=0.2, scale=0.08, dup=0.2):
  """gt [n_gt, 4], detections: jittered copies of ~(1 - miss) of the gt (some twice) plus n_fp
  random boxes, random scores (true ones higher on average)."""
  gt = random_boxes(rng, n_gt)
  hit = gt[rng.random(n_gt) > miss]
  hit = np.concatenate([hit, hit[rng.random(len(hit)) < dup]])
  det = np.concatenate([jitter(rng, hit, scale), random_boxes(rng, n_fp)])
  score = np.concatenate([rng.uniform(0.3, 1.0, len(hit)), rng.uniform(0.0, 0.8, n_fp)])
  perm = rng.permutation(len(det))
  return (det[perm], score[perm]), gt


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_random_images_match_cocoeval(seed):
  rng = np.random.default_rng(seed)
  dets, gts = [], []
  for _ in range(40):
    d, g = scene(rng, rng.integers(1, 12), rng.integers(0, 8))
    dets.append(d)
    gts.append(g)
  ours = assert_parity(dets, gts)
  assert 0.05 < ours['map'] < ours['map50'] < 1.0      # a non-trivial curve


def test_images_without_boxes_match_cocoeval():
  rng = np.random.default_rng(3)
  dets, gts = [], []
  for i in range(30):
    kind = i % 3
    if kind == 0:                      # gt and detections
      d, g = scene(rng, rng.integers(1, 6), rng.integers(0, 4))
    elif kind == 1:                    # no gt, false positives only
      d, g = (random_boxes(rng, 3), rng.uniform(0, 1, 3)), np.zeros((0, 4))
    else:                              # nothing at all
      d, g = (np.zeros((0, 4)), np.zeros(0)), np.zeros((0, 4))
    dets.append(d)
    gts.append(g)
  ours = assert_parity(dets, gts)
  # the false positives on empty images count: removing those images changes the number
  keep = [i for i in range(30) if i % 3 != 1]
  without = coco.evaluate([dets[i] for i in keep], [gts[i] for i in keep])
  assert without['map'] > ours['map'] + 1e-3
  # images with neither change nothing
  keep = [i for i in range(30) if i % 3 != 2]
  assert coco.evaluate([dets[i] for i in keep], [gts[i] for i in keep])['map'] == ours['map']


def test_crowded_scenes_with_ties_match_cocoeval():
  """Many heavily overlapping gt and detections on an integer grid (exact IoU ties: COCO's
  last-gt-wins rule) with quantised scores (exact score ties: mergesort order within and
  across images)."""
  rng = np.random.default_rng(4)
  dets, gts = [], []
  for _ in range(25):
    n = rng.integers(5, 30)
    xy = rng.integers(0, 6, (n, 2)) * 2.0 + 30
    wh = rng.integers(4, 8, (n, 2)) * 2.0
    g = np.concatenate([xy, xy + wh], 1)
    k = rng.integers(n, 2 * n + 10)
    src = g[rng.integers(0, n, k)]
    d = src + rng.integers(-2, 3, (k, 4)) * 1.0
    d[:, 2:] = np.maximum(d[:, 2:], d[:, :2] + 1)
    dets.append((d, np.round(rng.uniform(0, 1, k), 1)))
    gts.append(g)
  assert_parity(dets, gts)


def test_max_dets_truncation_matches_cocoeval():
  """An image with 150 detections whose true ones score lowest: only the top 100 by score count
  (per image, before pooling)."""
  rng = np.random.default_rng(5)
  g = random_boxes(rng, 30)
  fp = random_boxes(rng, 120) + 200.0            # far from every gt
  d = np.concatenate([fp, jitter(rng, g, 0.02)])
  s = np.concatenate([rng.uniform(0.5, 1.0, 120), rng.uniform(0.0, 0.5, 30)])
  other = scene(rng, 5, 2)
  dets, gts = [(d, s), other[0]], [g, other[1]]
  ours = assert_parity(dets, gts)
  full = coco.evaluate(dets, gts, max_dets=1000)
  assert full['ar100'] > ours['ar100'] + 0.3     # truncation dropped the 30 true detections


def test_degenerate_boxes_match_cocoeval():
  """Zero-size and inverted boxes: COCO's area-range rule ignores a negative-area gt (not
  counted) and an unmatched negative-area detection (not a false positive)."""
  rng = np.random.default_rng(8)
  dets, gts = [], []
  for i in range(10):
    (d, s), g = scene(rng, rng.integers(1, 6), rng.integers(1, 4))
    if i % 2:
      g[0] = g[0][[2, 1, 0, 3]]                  # inverted in x: negative area
      d[0] = d[0][[0, 3, 2, 1]]
      d[-1] = d[-1][[2, 3, 0, 1]]                # inverted in both: positive area
    else:
      d[0, 2] = d[0, 0]                          # zero width
    dets.append((d, s))
    gts.append(g)
  assert_parity(dets, gts)
  dets = [(np.array([[10, 10, 0, 20.]]), np.array([0.9])), (np.array([[0, 0, 10, 10.]]),
          np.array([0.5]))]
  gts = [np.zeros((0, 4)), np.array([[0, 0, 10, 10.], [10, 0, 0, 10]])]
  assert assert_parity(dets, gts)['map'] == pytest.approx(1.0)


def test_no_gt_anywhere_is_minus_one():
  d = (np.array([[0, 0, 10, 10.]]), np.array([0.9]))
  out = coco.evaluate([d], [np.zeros((0, 4))])
  assert out['map'] == out['map50'] == out['ar100'] == -1
  assert np.all(out['precision'] == -1)
  stats, _, _ = coco_eval([d], [np.zeros((0, 4))])
  assert stats[0] == stats[1] == stats[8] == -1


def test_box_iou_by_hand():
  a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], float)
  b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [2, 0, 4, 2], [5, 5, 6, 6]], float)
  # [0,0,2,2] vs [1,1,3,3]: inter 1, union 4 + 4 - 1 = 7; touching edges -> 0 (no +1 pixel)
  want = np.array([[1 / 7, 1, 0, 0], [0, 1 / 4, 0, 0]])
  np.testing.assert_allclose(coco.box_iou(a, b), want, atol=1e-15)
  assert coco.box_iou(a, np.zeros((0, 4))).shape == (2, 0)


def test_match_at_by_hand():
  gt = [np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], float),
        np.zeros((0, 4)), np.array([[0, 0, 10, 10.]])]
  dets = [
      # tp (gt0), duplicate of gt0 -> fp, tp (gt1, IoU 81/119 = 0.68), below threshold (ignored)
      (np.array([[0, 0, 10, 10], [1, 1, 11, 11], [21, 21, 31, 31], [50, 50, 60, 60.]]),
       np.array([0.9, 0.8, 0.7, 0.3])),
      (np.array([[0, 0, 5, 5.]]), np.array([0.95])),            # fp on an empty image
      (np.array([[5, 0, 15, 10.]]), np.array([0.6])),            # IoU 1/3 < 0.5 -> fp, gt missed
  ]
  m = coco.match_at(dets, gt, score_threshold=0.5)
  assert (m['tp'], m['fp'], m['fn']) == (2, 3, 2)
  assert m['precision'] == pytest.approx(2 / 5)
  assert m['recall'] == pytest.approx(2 / 4)
  assert m['f1'] == pytest.approx(2 * 0.4 * 0.5 / 0.9)
  m = coco.match_at(dets, gt, score_threshold=0.2)
  assert (m['tp'], m['fp'], m['fn']) == (3, 3, 1)
  m = coco.match_at(dets, gt, score_threshold=0.99)
  assert (m['tp'], m['fp'], m['fn'], m['precision'], m['recall'], m['f1']) == (0, 0, 4, 0, 0, 0)
  assert coco.match_at(dets, gt, 0.5, iou=0.3)['tp'] == 3


def test_match_at_agrees_with_cumulative_counts():
  """tp at a score threshold == COCO's cumulative tp down to that score (greedy in score order)."""
  rng = np.random.default_rng(6)
  dets, gts = zip(*[scene(rng, rng.integers(1, 8), rng.integers(0, 5)) for _ in range(20)])
  ours = coco.evaluate(dets, gts, iou_thresholds=[0.5])
  m = coco.match_at(dets, gts, score_threshold=-np.inf)
  assert m['tp'] + m['fn'] == ours['num_gt']
  assert m['tp'] + m['fp'] == ours['num_dets']
  assert m['recall'] == pytest.approx(ours['recall'][0], abs=1e-12)


def test_to_coco_round_trips_through_pycocotools():
  rng = np.random.default_rng(7)
  h, w = 120, 160
  dets, gts = [], []
  for i in range(12):
    d, g = scene(rng, rng.integers(0 if i % 4 == 0 else 1, 6), rng.integers(0, 4))
    dets.append((d[0] / 100.0, d[1]))          # normalised (scene boxes lie in [0, 100])
    gts.append(g / 100.0)
  gt_json, det_list = coco.to_coco(dets, gts, h, w)
  assert [im['id'] for im in gt_json['images']] == list(range(1, 13))
  assert all(im['width'] == w and im['height'] == h for im in gt_json['images'])
  assert len(gt_json['annotations']) == sum(len(g) for g in gts)
  a = gt_json['annotations'][0]
  x0, y0, x1, y1 = gts[0][0] * np.array([w, h, w, h])
  assert a['bbox'] == pytest.approx([x0, y0, x1 - x0, y1 - y0])
  assert a['area'] == pytest.approx((x1 - x0) * (y1 - y0))
  assert a['iscrowd'] == 0 and a['category_id'] == 1
  assert gt_json['categories'] == [{'id': 1, 'name': 'person', 'supercategory': 'person'}]
  with contextlib.redirect_stdout(io.StringIO()):
    c = COCO()
    c.dataset = gt_json
    c.createIndex()
    e = COCOeval(c, c.loadRes(det_list), 'bbox')
    e.evaluate()
    e.accumulate()
    e.summarize()
  ours = coco.evaluate(dets, gts)
  assert (ours['map'], ours['map50'], ours['map75'], ours['ar100']) == pytest.approx(
      (e.stats[0], e.stats[1], e.stats[2], e.stats[8]), abs=1e-10)
  with pytest.raises(ValueError, match='strictly increasing'):
    coco.to_coco(dets[:2], gts[:2], h, w, image_ids=[5, 3])
