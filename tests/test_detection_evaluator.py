"""The `detection` evaluator on synthetic rows: numbers equal vad_jax.evaluate.coco, perfect
detections, split checks, and the written files (re-evaluated with pycocotools)."""

from __future__ import annotations

import contextlib
import io
import json

import ml_collections
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vad_jax.evaluate import coco
from vad_jax.evaluate.detection import Detection, pick_images

H, W = 48, 64


def config():
  return ml_collections.ConfigDict({'data': {'height': H, 'width': W}})


def make_rows(n=24, p=6, k=10, seed=0, perfect=False):
  """Rows as the trainer gathers them (shuffled order: evaluate sorts by index)."""
  rng = np.random.default_rng(seed)
  count = rng.integers(0, p + 1, n)
  count[:3] = (0, p, 1)
  xy = rng.uniform(0, 0.7, (n, p, 2))
  boxes = np.concatenate([xy, xy + rng.uniform(0.05, 0.3, (n, p, 2))], -1)
  box_valid = np.arange(p)[None] < count[:, None]
  boxes = np.where(box_valid[..., None], boxes, 0.0)
  if perfect:
    out_boxes = np.zeros((n, k, 4))
    out_boxes[:, :p] = boxes
    out_scores = np.zeros((n, k))
    out_scores[:, :p] = rng.uniform(0.6, 1, (n, p))
    out_valid = np.zeros((n, k), bool)
    out_valid[:, :p] = box_valid
  else:
    src = boxes[np.arange(n)[:, None], rng.integers(0, p, (n, k))]
    out_boxes = src + rng.normal(0, 0.03, (n, k, 4))
    out_boxes[:, k // 2:] = np.concatenate([xy[:, :1], xy[:, :1] + 0.2], -1) + rng.uniform(
        0, 0.3, (n, k - k // 2, 1))
    out_scores = rng.uniform(0, 1, (n, k))
    out_valid = rng.random((n, k)) < 0.8
    out_valid[0, :3] = True                      # false positives on the empty image 0
  perm = rng.permutation(n)
  rows = {'index': np.arange(n, dtype=np.int32), 'label': count.astype(np.int32),
          'boxes': boxes.astype(np.float32), 'box_valid': box_valid,
          'out/boxes': out_boxes.astype(np.float32), 'out/scores': out_scores.astype(np.float32),
          'out/valid': out_valid}
  return {key: v[perm] for key, v in rows.items()}


def lists(rows):
  o = np.argsort(rows['index'])
  dets = [(rows['out/boxes'][i][rows['out/valid'][i]], rows['out/scores'][i][rows['out/valid'][i]])
          for i in o]
  gts = [rows['boxes'][i][rows['box_valid'][i]] for i in o]
  return dets, gts


def test_results_equal_coco_evaluate():
  ev = Detection(config(), ('person',), score_threshold=0.4)
  assert ev.scalars == ('map50', 'map', 'precision', 'recall', 'f1')
  assert ev.row_fields == ('boxes', 'box_valid')
  rows = make_rows()
  res, _ = ev.evaluate(rows)
  dets, gts = lists(rows)
  ap = coco.evaluate(dets, gts)
  op = coco.match_at(dets, gts, 0.4, iou=0.5)
  for key in ('map', 'map50', 'map75', 'ar100'):
    assert res[key] == ap[key]
  for key in ('precision', 'recall', 'f1'):
    assert res[key] == op[key]
  assert 0 < res['map'] < res['map50'] < 1
  assert res['score_threshold'] == 0.4
  assert res['num_images'] == 24
  assert res['num_objects'] == int(rows['box_valid'].sum()) == int(rows['label'].sum())
  shown = rows['out/valid'] & (rows['out/scores'] >= 0.4)
  assert res['detections_per_image'] == pytest.approx(shown.sum() / 24)
  json.dumps(res)                                # JSON-ready
  assert set(ev.definitions(None)) >= {'map_definition', 'map50_definition',
                                       'precision_recall_definition'}
  assert 'parity with pycocotools tested' in ev.definitions(None)['map_definition']


def test_perfect_detections():
  ev = Detection(config(), ('person',))
  res, _ = ev.evaluate(make_rows(perfect=True, seed=1))
  assert res['map50'] == res['map'] == pytest.approx(1.0)
  assert res['precision'] == res['recall'] == res['f1'] == 1.0


def test_check_split():
  ev = Detection(config(), ('person',))
  ev.check_split(np.array([0, 2, 0]), 'validation')
  with pytest.raises(ValueError, match='validation split .*no annotated object'):
    ev.check_split(np.zeros(5, np.int32), 'validation')
  with pytest.raises(ValueError, match='no annotated object'):
    ev.check_split(np.zeros(0, np.int32), 'test')
  with pytest.raises(ValueError, match=r"needs rows\['out/boxes'\]"):
    ev.evaluate({k: v for k, v in make_rows().items() if k != 'out/boxes'})


class FakeSource:
  """A random-access source: source[i] -> {'image': uint8 [H, W, 3], 'index': i}."""

  def __init__(self, n):
    self.n = n

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    if not 0 <= i < self.n:
      raise IndexError(i)
    return {'image': np.full((H, W, 3), 20 * (i % 10), np.uint8), 'index': i}


def test_write_files_reload_with_pycocotools(tmp_path):
  ev = Detection(config(), ('person',), score_threshold=0.4, plot_images=5)
  rows = make_rows()
  res, artifact = ev.evaluate(rows)
  ev.write(artifact, res, str(tmp_path), 'validation')
  f = np.load(tmp_path / 'detections_validation.npz')
  np.testing.assert_array_equal(f['index'], np.arange(24))
  o = np.argsort(rows['index'])
  np.testing.assert_array_equal(f['gt_boxes'], rows['boxes'][o])
  np.testing.assert_array_equal(f['gt_valid'], rows['box_valid'][o])
  np.testing.assert_array_equal(f['det_boxes'], rows['out/boxes'][o])
  np.testing.assert_array_equal(f['det_scores'], rows['out/scores'][o])
  np.testing.assert_array_equal(f['det_valid'], rows['out/valid'][o])
  assert not (tmp_path / 'validation_detections.png').exists()
  with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(str(tmp_path / 'coco_gt_validation.json'))
    assert len(gt.getImgIds()) == 24           # images without boxes are listed too
    assert gt.imgs[0]['width'] == W and gt.imgs[0]['height'] == H
    e = COCOeval(gt, gt.loadRes(str(tmp_path / 'coco_dets_validation.json')), 'bbox')
    e.evaluate()
    e.accumulate()
    e.summarize()
  assert (res['map'], res['map50'], res['map75'], res['ar100']) == pytest.approx(
      (e.stats[0], e.stats[1], e.stats[2], e.stats[8]), abs=1e-6)
  assert sorted(tmp_path.iterdir()) == sorted(tmp_path / n for n in (
      'detections_validation.npz', 'coco_gt_validation.json', 'coco_dets_validation.json'))


def test_write_png_with_source(tmp_path):
  ev = Detection(config(), ('person',), plot_images=4)
  res, artifact = ev.evaluate(make_rows(seed=2))
  ev.write(artifact, res, str(tmp_path), 'test', source=FakeSource(24))
  png = tmp_path / 'test_detections.png'
  assert png.stat().st_size > 0
  assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  assert not list(tmp_path.glob('*.tmp*'))


def test_pick_images():
  counts = np.array([3, 0, 5, 5, 1, 0])
  assert pick_images(counts, 3) == [2, 3, 1]     # most crowded, then one empty image
  assert pick_images(counts, 10) == [2, 3, 0, 4, 1, 5]
  assert pick_images(np.array([2, 1]), 1) == [0]
