"""Box-moving augmentation: the boxes must follow the pixels (vad_jax.data.box_augment)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from vad_jax.data import box_augment as ba

H, W, P = 96, 128, 5
# pixel-aligned boxes (x0, y0, x1, y1) in pixels; the last one hugs the right edge
PIXEL_BOXES = [(16, 12, 48, 60), (60, 30, 100, 50), (112, 40, 127, 80)]


def _example(pixel_boxes=PIXEL_BOXES, white=False):
  """Black image with box k filled 255 in channel k (all channels when `white`, one box)."""
  image = np.zeros((H, W, 3), np.uint8)
  boxes = np.zeros((P, 4), np.float32)
  for k, (x0, y0, x1, y1) in enumerate(pixel_boxes):
    image[y0:y1, x0:x1, slice(None) if white else k] = 255
    boxes[k] = (x0 / W, y0 / H, x1 / W, y1 / H)
  n = len(pixel_boxes)
  return {'image': image, 'boxes': boxes, 'box_valid': np.arange(P) < n, 'label': np.int32(n),
          'index': np.int32(3)}


def _white_bbox(channel):
  """(x0, y0, x1, y1) in pixels of the pixels above 127, or None."""
  ys, xs = np.nonzero(channel > 127)
  if not len(xs):
    return None
  return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)


def _check_boxes_follow_pixels(example, out, channels):
  valid = out['box_valid']
  n = int(valid.sum())
  assert out['label'] == n and out['label'].dtype == np.int32
  assert valid[:n].all() and not valid[n:].any(), 'valid boxes must stay packed first'
  np.testing.assert_array_equal(out['boxes'][n:], 0)
  assert ((out['boxes'][:n] >= 0) & (out['boxes'][:n] <= 1)).all()
  matched = []
  for j in range(n):
    box_px = out['boxes'][j].astype(np.float64) * [W, H, W, H]
    hits = [k for k in range(channels)
            if (bb := _white_bbox(out['image'][..., k])) is not None
            and np.abs(bb - box_px).max() <= 1.5]
    assert hits, f'box {j} {box_px} matches no drawn rectangle'
    matched.append(hits[0])
  assert matched == sorted(set(matched)), 'kept boxes keep their order'
  for k in set(range(channels)) - set(matched):       # dropped: little of it left in frame
    x0, y0, x1, y1 = PIXEL_BOXES[k]
    assert (out['image'][..., k] > 127).sum() < 0.6 * (x1 - x0) * (y1 - y0)
  return n


@pytest.mark.parametrize('resample', ['bilinear', 'nearest'])
def test_boxes_follow_the_pixels(resample):
  example = _example()
  before = {k: np.copy(v) for k, v in example.items()}
  moved = 0
  for seed in range(24):
    out = ba.random_geometric(example, np.random.default_rng(seed), resample=resample)
    assert out['image'].shape == (H, W, 3) and out['image'].dtype == np.uint8
    assert out['boxes'].shape == (P, 4) and out['boxes'].dtype == np.float32
    assert out['box_valid'].shape == (P,) and out['box_valid'].dtype == bool
    n = _check_boxes_follow_pixels(example, out, len(PIXEL_BOXES))
    moved += n and np.abs(out['boxes'][0] - example['boxes'][0]).max() * W > 2
  assert moved >= 12, 'the draws hardly move the boxes: the test would be vacuous'
  for k, v in before.items():                          # the input is not modified
    np.testing.assert_array_equal(example[k], v)


def test_one_white_rectangle():
  example = _example([(40, 20, 90, 70)], white=True)
  for seed in range(8):
    out = ba.random_geometric(example, np.random.default_rng(seed), fill=0)
    assert out['label'] == 1
    bb = _white_bbox(out['image'].min(-1))
    np.testing.assert_allclose(bb, out['boxes'][0] * [W, H, W, H], atol=1.5)


def test_flip_alone():
  example = _example()
  out = ba.random_geometric(example, np.random.default_rng(0), flip_prob=1.0, scale=(1, 1),
                            shift=0.0)
  n = len(PIXEL_BOXES)
  b, o = example['boxes'][:n], out['boxes'][:n]
  np.testing.assert_allclose(o[:, 0], 1 - b[:, 2], atol=1e-6)
  np.testing.assert_allclose(o[:, 2], 1 - b[:, 0], atol=1e-6)
  np.testing.assert_allclose(o[:, [1, 3]], b[:, [1, 3]], atol=1e-6)
  np.testing.assert_array_equal(out['image'], example['image'][:, ::-1])
  assert out['label'] == n


def test_box_pushed_out_of_frame_is_dropped():
  # zoom 1.25 about the centre: x' = 1.25 (x - 0.5) + 0.5
  example = _example([(118, 10, 127, 40), (50, 40, 70, 60), (109, 50, 122, 70)])
  out = ba.random_geometric(example, np.random.default_rng(0), flip_prob=0.0, scale=(1.25, 1.25),
                            shift=0.0)
  assert out['label'] == 2                             # box 0 leaves the frame entirely
  np.testing.assert_array_equal(out['box_valid'], [True, True, False, False, False])
  expect = 1.25 * (example['boxes'][1] - 0.5) + 0.5
  np.testing.assert_allclose(out['boxes'][0], expect, atol=1e-6)
  x0 = 1.25 * (109 / W - 0.5) + 0.5                   # box 2: 0.66 of it stays in frame
  np.testing.assert_allclose(out['boxes'][1, [0, 2]], [x0, 1.0], atol=1e-6)
  np.testing.assert_array_equal(out['boxes'][2:], 0)
  strict = ba.random_geometric(example, np.random.default_rng(0), flip_prob=0.0,
                               scale=(1.25, 1.25), shift=0.0, min_visible=0.7)
  assert strict['label'] == 1 and strict['box_valid'].sum() == 1


def test_map_boxes_drops_degenerate():
  boxes = np.array([[0.5, 0.5, 0.503, 0.7], [0.1, 0.1, 0.4, 0.4]], np.float32)
  out, valid = ba.map_boxes(boxes, np.array([True, True]), 1, 0, 1, 0, H, W)
  np.testing.assert_array_equal(valid, [True, False])  # 0.003 * 128 < 1 pixel wide
  np.testing.assert_allclose(out[0], boxes[1])


def test_photometric_leaves_boxes():
  example = _example()
  example['image'] = (example['image'] // 2 + 64).astype(np.uint8)   # nothing saturates
  out = ba.random_photometric(example, np.random.default_rng(1))
  for k in ('boxes', 'box_valid', 'label', 'index'):
    np.testing.assert_array_equal(out[k], example[k])
  assert out['image'].dtype == np.uint8 and out['image'].shape == (H, W, 3)
  assert not np.array_equal(out['image'], example['image'])


@pytest.mark.parametrize('name', ['geometric', 'geometric+photometric'])
def test_deterministic_for_a_seed(name):
  fn = ba.make_augment(name)
  example = _example()
  a = fn(example, np.random.default_rng(7))
  b = pickle.loads(pickle.dumps(fn))(example, np.random.default_rng(7))
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  c = fn(example, np.random.default_rng(8))
  assert not np.array_equal(a['image'], c['image'])


def test_make_augment_names():
  assert ba.make_augment('none') is None
  with pytest.raises(ValueError, match='geometric\\+photometric'):
    ba.make_augment('mosaic')
