"""Tests for the procedural synthetic surveillance dataset (vad_jax.data.synthetic)."""
import dataclasses
import pickle

import numpy as np
import pytest

from vad_jax.classes import CLASS_NAMES, MOTION_ONLY_CLASSES, NORMAL, NUM_CLASSES
from vad_jax.data.synthetic import SyntheticSpec, SyntheticVideos, class_probabilities

SMALL = SyntheticSpec(height=32, width=32, num_frames=32, num_videos=600, seed=3)


@pytest.fixture(scope='module')
def small():
  ds = SyntheticVideos(SMALL, 'train')
  return ds, ds.labels()


def _first(labels, c, k=1):
  idx = np.nonzero(labels == c)[0][:k]
  assert len(idx) == k, f'not enough videos of class {CLASS_NAMES[c]}'
  return idx


def test_classes():
  assert NUM_CLASSES == len(CLASS_NAMES) == 14
  assert CLASS_NAMES[NORMAL] == 'Normal'
  assert CLASS_NAMES[1:4] == ('Abuse', 'Arrest', 'Arson') and CLASS_NAMES[-1] == 'Vandalism'
  assert len(MOTION_ONLY_CLASSES) >= 4 and set(MOTION_ONLY_CLASSES) <= set(CLASS_NAMES[1:])


@pytest.mark.parametrize('h,w,n,p', [(32, 32, 16, 6), (64, 64, 36, 6), (24, 40, 20, 3)])
def test_shapes_and_dtypes(h, w, n, p):
  ds = SyntheticVideos(SyntheticSpec(height=h, width=w, num_frames=n, num_videos=8, max_people=p), 'test')
  assert len(ds) == 8
  ex = ds[7]
  assert ex['frames'].shape == (n, h, w, 3) and ex['frames'].dtype == np.uint8
  assert ex['label'].shape == () and ex['label'].dtype == np.int32
  assert ex['mask'].shape == (n,) and ex['mask'].dtype == np.uint8
  assert ex['boxes'].shape == (n, p, 4) and ex['boxes'].dtype == np.float32
  assert ex['box_valid'].shape == (n, p) and ex['box_valid'].dtype == bool
  assert ex['index'] == 7 and ex['index'].dtype == np.int32
  with pytest.raises(IndexError):
    ds[8]


def test_determinism_and_random_access():
  ds = SyntheticVideos(SyntheticSpec(height=32, width=32, num_frames=16, num_videos=10), 'train')
  a = ds[4]
  ds[9], ds[0]                                   # rendering other videos must not matter
  b = SyntheticVideos(ds.spec, 'train')[4]
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  other_seed = SyntheticVideos(SyntheticSpec(height=32, width=32, num_frames=16, num_videos=10, seed=1), 'train')[4]
  other_split = SyntheticVideos(ds.spec, 'validation')[4]
  assert not np.array_equal(a['frames'], other_seed['frames'])
  assert not np.array_equal(a['frames'], other_split['frames'])
  assert not np.array_equal(a['frames'], ds[5]['frames'])


def test_picklable():
  ds = SyntheticVideos(SyntheticSpec(height=32, width=32, num_frames=8, num_videos=4), 'validation')
  ds2 = pickle.loads(pickle.dumps(ds))
  np.testing.assert_array_equal(ds[2]['frames'], ds2[2]['frames'])
  np.testing.assert_array_equal(ds.labels(), ds2.labels())


def test_labels_masks_and_boxes(small):
  ds, labels = small
  lo, hi = SMALL.window
  for i in range(80):
    ex = ds[i]
    assert ex['label'] == labels[i]
    m = ex['mask']
    assert set(np.unique(m)) <= {0, 1}
    if labels[i] == NORMAL:
      assert m.sum() == 0
    else:
      on = np.nonzero(m)[0]
      assert lo <= len(on) <= hi and on[-1] - on[0] + 1 == len(on), 'window must be one contiguous run'
    b, v = ex['boxes'], ex['box_valid']
    assert np.all((b >= 0) & (b <= 1))
    assert np.all(b[~v] == 0)
    assert np.all(b[v][:, 2] > b[v][:, 0] + 0.01) and np.all(b[v][:, 3] > b[v][:, 1] + 0.05)
    # nothing the event adds survives outside the window: the same people are reported there
    counts = v.sum(1)[m == 0]
    assert counts.min() == counts.max() >= 2


def test_short_clips_every_class():
  spec = SyntheticSpec(height=32, width=48, num_frames=16, num_videos=400, seed=5, max_people=4)
  ds = SyntheticVideos(spec, 'train')
  labels = ds.labels()
  for c in range(NUM_CLASSES):
    ex = ds[int(_first(labels, c)[0])]
    assert ex['label'] == c
    if c != NORMAL:
      assert 12 <= ex['mask'].sum() <= 16


def test_class_frequencies():
  spec = SyntheticSpec(num_videos=2000, normal_fraction=0.4)
  counts = np.bincount(SyntheticVideos(spec, 'train').labels(), minlength=NUM_CLASSES)
  assert counts.sum() == 2000
  assert abs(counts[NORMAL] / 2000 - 0.4) < 0.04
  assert counts[NORMAL] == counts.max() and counts[1:].min() > 40
  p = class_probabilities(SyntheticSpec(class_imbalance=8.0))
  assert np.isclose(p.sum(), 1) and np.isclose(p[1] / p[-1], 8.0)
  skewed = np.bincount(SyntheticVideos(SyntheticSpec(num_videos=2000, class_imbalance=8.0), 'test').labels(),
                       minlength=NUM_CLASSES)
  assert skewed[1] > 3 * skewed[-1]


def _frame_stats(ex):
  f = ex['frames'].astype(np.float32)
  b, v = ex['boxes'], ex['box_valid']
  c = (b[..., :2] + b[..., 2:]) / 2
  speed = np.linalg.norm(np.diff(c, axis=0), axis=-1)                  # [N-1, P]
  both = v[1:] & v[:-1]
  mean_speed = np.array([s[k].mean() for s, k in zip(speed, both)])   # speed into frame t (t >= 1)
  max_speed = np.array([s[k].max() for s, k in zip(speed, both)])
  return dict(mean=f.mean((1, 2)), std=f.std((1, 2)), count=v.sum(1),
              size=np.stack([b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]], -1),
              mean_speed=mean_speed, max_speed=max_speed, valid=v)


def test_motion_only_classes_differ_only_in_motion(small):
  ds, labels = small
  normal = [_frame_stats(ds[int(i)]) for i in _first(labels, NORMAL, 80)]
  lo = {k: np.min([s[k].min(0) for s in normal], 0) for k in ('mean', 'std')}
  hi = {k: np.max([s[k].max(0) for s in normal], 0) for k in ('mean', 'std')}
  tol = {k: 0.2 * (hi[k] - lo[k]) for k in lo}
  counts = np.concatenate([s['count'] for s in normal])
  sizes = np.concatenate([s['size'][s['valid']] for s in normal])
  normal_speed = np.mean([s['mean_speed'].mean() for s in normal])
  normal_max_speed = np.mean([s['max_speed'].mean() for s in normal])
  for name in MOTION_ONLY_CLASSES:
    mean_speeds, max_speeds = [], []
    for i in _first(labels, CLASS_NAMES.index(name), 6):
      ex = ds[int(i)]
      s = _frame_stats(ex)
      win = ex['mask'].astype(bool)
      out = ~win
      # every frame in the window looks like a normal frame ...
      for k in ('mean', 'std'):
        assert np.all(s[k][win] >= lo[k] - tol[k]) and np.all(s[k][win] <= hi[k] + tol[k]), (name, k)
        # ... and like this very video's own normal frames (same scene), within 3 grey levels
        assert np.all(s[k][win] >= s[k][out].min(0) - 3) and np.all(s[k][win] <= s[k][out].max(0) + 3), (name, k)
      assert counts.min() <= s['count'][win].min() and s['count'][win].max() <= counts.max()
      assert np.all(s['count'][win] == s['count'][out][0]), 'same people inside and outside the window'
      ws = s['size'][win][s['valid'][win]]
      assert np.all(ws >= 0.97 * sizes.min(0)) and np.all(ws <= 1.03 * sizes.max(0))
      inner = win[1:] & win[:-1]
      mean_speeds.append(s['mean_speed'][inner].mean())
      max_speeds.append(s['max_speed'][inner].mean())
    # ... but people move much faster
    assert np.mean(mean_speeds) > 1.7 * normal_speed, (name, np.mean(mean_speeds), normal_speed)
    assert np.mean(max_speeds) > 2.5 * normal_max_speed, (name, np.mean(max_speeds), normal_max_speed)


def test_grain_source():
  grain = pytest.importorskip('grain')
  ds = SyntheticVideos(SyntheticSpec(height=16, width=16, num_frames=4, num_videos=6), 'train')
  mapped = grain.MapDataset.source(ds)
  assert len(mapped) == 6
  np.testing.assert_array_equal(mapped[3]['frames'], ds[3]['frames'])


def test_event_size_floor():
  """min_event_px enlarges sub-pixel event details at 32x32 and changes nothing at 128x128."""
  from vad_jax.data.scene import World
  w = World(8, 32, 32, None, [], min_px=1.5)
  np.testing.assert_allclose(w.at_least(0.02), 1.5 / 32)          # 0.64 px -> 1.5 px
  np.testing.assert_allclose(w.at_least(0.06, 'h', 2.0), 0.094, atol=1e-3)  # 3 px bag
  np.testing.assert_allclose(w.at_least(0.2), 0.2)                # already big enough
  labels = SyntheticVideos(SyntheticSpec(height=32, width=32, num_frames=32, num_videos=200), 'train').labels()
  idx = [int(_first(labels, CLASS_NAMES.index(c))[0]) for c in ('Fighting', 'Vandalism', 'Stealing')]
  for h, same in ((128, True), (32, False)):
    spec = SyntheticSpec(height=h, width=h, num_frames=32, num_videos=200)
    floored = SyntheticVideos(spec, 'train')
    raw = SyntheticVideos(dataclasses.replace(spec, min_event_px=0.0), 'train')
    equal = [np.array_equal(floored[i]['frames'], raw[i]['frames']) for i in idx]
    assert all(equal) if same else not any(equal), (h, equal)
