"""Seed 004's grid: target assignment, decoding, the loss and NMS against numpy written
independently here; the model's layer table; and an overfit check that loss and decoding agree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vad_jax.boxes import grid as grid_lib
from vad_jax.boxes import nms as nms_lib
from vad_jax.losses import grid as grid_loss
from vad_jax.models import detector as detector_model


def random_boxes(rng, b, p, lo=0.03, hi=0.3):
  c = rng.uniform(0.0, 1.0, (b, p, 2))
  wh = rng.uniform(lo, hi, (b, p, 2))
  return np.concatenate([c - wh / 2, c + wh / 2], -1).clip(0, 1).astype(np.float32)


def numpy_targets(boxes, valid, sy, sx):
  """Loop reference: each valid box to the cell of its centre; the largest area wins a cell
  (first on ties)."""
  b, p, _ = boxes.shape
  obj = np.zeros((b, sy, sx), np.float32)
  txty = np.zeros((b, sy, sx, 2), np.float32)
  twth = np.zeros((b, sy, sx, 2), np.float32)
  owner = -np.ones((b, sy, sx), np.int64)
  best = np.full((b, sy, sx), -1.0)
  for n in range(b):
    for k in range(p):
      if not valid[n, k]:
        continue
      x0, y0, x1, y1 = boxes[n, k].astype(np.float64)
      cx, cy = (x0 + x1) / 2 * sx, (y0 + y1) / 2 * sy
      i, j = min(int(cx), sx - 1), min(int(cy), sy - 1)
      area = (x1 - x0) * (y1 - y0)
      if area > best[n, j, i]:
        best[n, j, i] = area
        owner[n, j, i] = k
        obj[n, j, i] = 1
        txty[n, j, i] = (cx - i, cy - j)
        twth[n, j, i] = (x1 - x0, y1 - y0)
  return obj, txty, twth, owner


def test_cell_targets_match_numpy_including_shared_cells_and_edges():
  rng = np.random.default_rng(0)
  boxes = random_boxes(rng, 6, 9)
  valid = rng.random((6, 9)) < 0.8
  # two boxes centred in one cell (0.30, 0.30 at S = 8: cell 2, 2): the larger must win
  boxes[0, 0] = (0.28, 0.28, 0.32, 0.32)
  boxes[0, 1] = (0.20, 0.20, 0.40, 0.40)
  valid[0, :2] = True
  boxes[1, 0] = (0.8, 0.8, 1.0, 1.0)          # centre (0.9, 0.9); and a centre on the edge:
  boxes[1, 1] = (0.9, 0.9, 1.1, 1.1)          # cx = 1.0 goes to the last cell
  valid[1, :2] = True
  for sy, sx in ((8, 8), (5, 7)):
    out = jax.jit(grid_lib.cell_targets, static_argnums=2)(boxes, valid, (sy, sx))
    obj, txty, twth, owner = numpy_targets(boxes, valid, sy, sx)
    np.testing.assert_array_equal(np.asarray(out['owner']), owner)
    np.testing.assert_array_equal(np.asarray(out['obj']), obj)
    np.testing.assert_allclose(np.asarray(out['txty']), txty, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out['twth']), twth, atol=1e-6)
  out = grid_lib.cell_targets(boxes, valid, (8, 8))
  assert int(out['owner'][0, 2, 2]) == 1
  assert np.asarray(out['obj']).sum() < valid.sum()     # shared cells do lose boxes


def test_encode_then_decode_returns_the_boxes():
  """Targets written as cell outputs (objectness = 1 where owned) decode to the boxes exactly."""
  s = 8
  rng = np.random.default_rng(1)
  cells = rng.permutation(s * s)[:5]                   # 5 boxes in distinct cells
  centre = (np.stack([cells % s, cells // s], 1) + rng.uniform(0.05, 0.95, (5, 2))) / s
  wh = rng.uniform(0.05, 0.3, (5, 2))
  boxes = np.concatenate([centre - wh / 2, centre + wh / 2], 1)[None].astype(np.float32)
  t = grid_lib.cell_targets(boxes, np.ones((1, 5), bool), (s, s))
  pred = jnp.concatenate([t['txty'], t['twth'], t['obj'][..., None]], -1)
  decoded, scores = grid_lib.decode(pred)
  order = np.argsort(-np.asarray(scores[0]), kind='stable')[:5]
  got = np.asarray(decoded[0])[order]
  want = boxes[0][np.argsort(cells)]                   # row-major cell order = decode order
  np.testing.assert_allclose(got[np.lexsort(got.T[::-1])], want[np.lexsort(want.T[::-1])],
                             atol=1e-6)
  assert np.asarray(scores).sum() == 5


def test_decode_is_the_seeds_formula():
  rng = np.random.default_rng(2)
  cells = rng.uniform(size=(2, 3, 4, 5)).astype(np.float32)
  boxes, scores = grid_lib.decode(cells)
  b, j, i = 1, 2, 3
  tx, ty, tw, th, obj = cells[b, j, i]
  cx, cy = (i + tx) / 4, (j + ty) / 3
  np.testing.assert_allclose(boxes[b, j * 4 + i], [cx - tw / 2, cy - th / 2, cx + tw / 2,
                                                  cy + th / 2], atol=1e-6)
  assert scores[b, j * 4 + i] == pytest.approx(obj)


def numpy_loss(logits, obj, txty, twth, lc, ln):
  sig = 1 / (1 + np.exp(-logits.astype(np.float64)))
  total = 0.0
  for n in range(logits.shape[0]):
    for j in range(logits.shape[1]):
      for i in range(logits.shape[2]):
        p = sig[n, j, i]
        if obj[n, j, i]:
          total += lc * ((p[0] - txty[n, j, i, 0]) ** 2 + (p[1] - txty[n, j, i, 1]) ** 2)
          total += lc * ((p[2] ** 2 - twth[n, j, i, 0] ** 2) ** 2 +
                         (p[3] ** 2 - twth[n, j, i, 1] ** 2) ** 2)
          total += -np.log(p[4])
        else:
          total += ln * -np.log(1 - p[4])
  return total / logits.shape[0]


def test_grid_loss_matches_numpy():
  rng = np.random.default_rng(3)
  boxes = random_boxes(rng, 3, 4)
  valid = rng.random((3, 4)) < 0.7
  t = grid_lib.cell_targets(boxes, valid, (6, 6))
  logits = rng.normal(size=(3, 6, 6, 5)).astype(np.float32) * 2
  for lc, ln in ((5.0, 0.5), (2.0, 1.0)):
    got, parts = grid_loss.grid_loss(logits, t, lc, ln)
    want = numpy_loss(logits, *(np.asarray(t[k]) for k in ('obj', 'txty', 'twth')), lc, ln)
    assert float(got) == pytest.approx(want, rel=1e-5)
  assert set(parts) == {'xy', 'wh', 'obj', 'noobj'}


def numpy_nms(boxes, scores, thr, k, min_score):
  def iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / u if u > 0 else 0.0
  kept = []
  for i in np.argsort(-scores, kind='stable'):
    if scores[i] < min_score:
      break
    if all(iou(boxes[i], boxes[j]) <= thr for j in kept):
      kept.append(i)
  return kept[:k]


@pytest.mark.parametrize('thr,min_score', [(0.5, 0.0), (0.3, 0.2), (0.7, 0.0)])
def test_nms_matches_numpy_greedy(thr, min_score):
  rng = np.random.default_rng(4)
  centres = rng.uniform(0.2, 0.8, (6, 2))      # clusters: many overlaps to suppress
  c = centres[rng.integers(0, 6, 60)] + rng.normal(0, 0.03, (60, 2))
  wh = rng.uniform(0.1, 0.2, (60, 2))
  boxes = np.concatenate([c - wh / 2, c + wh / 2], 1).astype(np.float32)
  scores = rng.random(60).astype(np.float32)
  fn = jax.jit(nms_lib.nms, static_argnums=(2, 3, 4))
  out_boxes, out_scores, valid = fn(boxes, scores, thr, 20, min_score)
  kept = numpy_nms(boxes.astype(np.float64), scores, thr, 20, min_score)
  n = int(np.sum(valid))
  assert n == len(kept) and 0 < n
  np.testing.assert_allclose(np.asarray(out_boxes)[:n], boxes[kept], atol=0)
  np.testing.assert_allclose(np.asarray(out_scores)[:n], scores[kept], atol=0)
  assert not np.asarray(out_scores)[n:].any() and not np.asarray(valid)[n:].any()
  # batched = per image
  bb, bs, bv = nms_lib.batched_nms(np.stack([boxes, boxes[::-1]]), np.stack([scores,
                                   scores[::-1]]), thr, 20, min_score)
  np.testing.assert_array_equal(np.asarray(bb[0]), np.asarray(out_boxes))
  kept_r = numpy_nms(boxes[::-1].astype(np.float64), scores[::-1], thr, 20, min_score)
  assert int(np.sum(bv[1])) == len(kept_r)


def test_model_is_the_seeds_table():
  model = detector_model.GridDetector()
  x = jnp.zeros((1, 416, 416, 3), jnp.uint8)
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  out = jax.eval_shape(model.apply, variables, x)
  assert out.shape == (1, 26, 26, 5)
  params = variables['params']
  chans = [3, 16, 32, 64, 64, 128, 128, 256, 256, 512]
  for k in range(9):
    assert params[f'conv{k + 1}']['kernel'].shape == (3, 3, chans[k], chans[k + 1])
    assert 'bias' not in params[f'conv{k + 1}']                 # BatchNorm carries the bias
  assert params['head']['kernel'].shape == (1, 1, 512, 5)
  n_conv = sum(9 * a * b for a, b in zip(chans[:-1], chans[1:]))
  n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
  assert n == n_conv + 2 * sum(chans[1:]) + 512 * 5 + 5 == 2_351_381
  # S follows the input; a set grid resizes
  small = jax.eval_shape(model.apply, variables, jnp.zeros((2, 128, 96, 3), jnp.uint8))
  assert small.shape == (2, 8, 6, 5)
  resized = detector_model.GridDetector(grid=13)
  assert jax.eval_shape(resized.apply, variables, x).shape == (1, 13, 13, 5)


def test_overfits_a_few_images_and_finds_their_boxes():
  """Loss targets, the model and decoding agree: a tiny model trained on 4 images of white
  rectangles recovers their boxes (mAP@0.5 near 1 on those images). Fails if decoding swapped
  rows and columns, or targets used another cell than decoding reads."""
  import optax
  from vad_jax.evaluate import coco
  rng = np.random.default_rng(5)
  s, h = 4, 64
  images = np.zeros((4, h, h, 3), np.uint8)
  boxes = np.zeros((4, 3, 4), np.float32)
  for n in range(4):
    cells = rng.permutation(s * s)[:3]
    for k, c in enumerate(cells):
      cx, cy = (c % s + rng.uniform(0.3, 0.7)) / s, (c // s + rng.uniform(0.3, 0.7)) / s
      w, hh = rng.uniform(0.12, 0.2), rng.uniform(0.15, 0.25)
      boxes[n, k] = (cx - w / 2, cy - hh / 2, cx + w / 2, cy + hh / 2)
      x0, y0, x1, y1 = (np.array(boxes[n, k]) * h).round().astype(int)
      images[n, y0:y1, x0:x1] = 255
  valid = np.ones((4, 3), bool)
  model = detector_model.GridDetector(width_mult=0.25)
  variables = model.init(jax.random.key(0), images)
  tx = optax.adam(5e-3)
  opt = tx.init(variables['params'])

  @jax.jit
  def step(params, stats, opt):
    def f(p):
      out, mut = model.apply({'params': p, 'batch_stats': stats}, images, train=True,
                             mutable=['batch_stats'])
      t = grid_lib.cell_targets(boxes, valid, out.shape[1:3])
      return grid_loss.grid_loss(out, t)[0], mut['batch_stats']
    (loss, stats), g = jax.value_and_grad(f, has_aux=True)(params)
    u, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, u), stats, opt, loss

  params, stats = variables['params'], variables['batch_stats']
  for _ in range(150):
    params, stats, opt, loss = step(params, stats, opt)
  cells = jax.nn.sigmoid(model.apply({'params': params, 'batch_stats': stats}, images))
  dec, sc = grid_lib.decode(cells)
  ob, os_, ov = nms_lib.batched_nms(dec, sc, 0.5, 10)
  dets = [(np.asarray(ob[n])[np.asarray(ov[n])], np.asarray(os_[n])[np.asarray(ov[n])])
          for n in range(4)]
  result = coco.evaluate(dets, [boxes[n] for n in range(4)])
  assert result['map50'] > 0.9, (float(loss), result['map50'])
