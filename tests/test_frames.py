"""Seed 002 data: single frames of the synthetic videos (vad_jax.data.frames) and class-balanced
sampling (vad_jax.data.sampling)."""

import pickle
import threading
from concurrent.futures import ThreadPoolExecutor

import grain
import numpy as np
import pytest

from vad_jax.classes import CLASS_NAMES, NORMAL
from vad_jax.data import frames as frames_mod
from vad_jax.data.frames import (SyntheticFrames, event_window,
                                 frame_indices)
from vad_jax.data.sampling import class_weights, epoch_indices, weighted_dataset
from vad_jax.data.source import Source
from vad_jax.data.splits import SplitLeak, check_sources_disjoint
from vad_jax.data.synthetic import SyntheticSpec, SyntheticVideos

SPEC = SyntheticSpec(height=32, width=32, num_frames=8, num_videos=8, normal_fraction=0.2,
                     window=(2, 4), seed=5)


@pytest.fixture(scope='module')
def rendered():
  """Every video of SPEC's train split, rendered by SyntheticVideos (the reference)."""
  ds = SyntheticVideos(SPEC, 'train')
  return [ds[v] for v in range(len(ds))]


def test_frame_indices():
  np.testing.assert_array_equal(frame_indices(8, 4), [1, 3, 5, 7])
  np.testing.assert_array_equal(frame_indices(8, 8), np.arange(8))
  np.testing.assert_array_equal(frame_indices(10, 3), [1, 5, 8])
  np.testing.assert_array_equal(frame_indices(9, 1), [4])
  with pytest.raises(ValueError, match='frames_per_video'):
    frame_indices(8, 9)


@pytest.mark.parametrize('window,n', [((2, 4), 8), ((12, 20), 16), ((30, 40), 8)])
def test_event_window_replays_render(window, n):
  spec = SyntheticSpec(height=16, width=16, num_frames=n, num_videos=6, normal_fraction=0.2,
                       window=window, seed=11)
  ds = SyntheticVideos(spec, 'validation')
  for v in range(len(ds)):
    label, start, length = event_window(spec, ds._rng(v), ds._cdf)
    ex = ds[v]
    assert label == ex['label']
    want = np.zeros(n, np.uint8)
    if label != NORMAL:
      want[start:start + length] = 1
    np.testing.assert_array_equal(ex['mask'], want)


def test_examples_match_rendered_videos(rendered):
  src = SyntheticFrames(SPEC, 'train', 4)
  assert isinstance(src, Source) and src.sequence_field == 'image'
  assert src.class_names == CLASS_NAMES and len(src) == 32
  labels = src.labels()
  assert src._pixels is None                       # labels() rendered nothing
  assert labels.dtype == np.int32 and labels.shape == (32,)
  np.testing.assert_array_equal(src.lengths(), np.ones(32))
  assert src.lengths().dtype == np.int64
  frame_of = [1, 3, 5, 7]
  for i in range(len(src)):
    ex = src[i]
    v, j = divmod(i, 4)
    video = rendered[v]
    assert ex['image'].shape == (32, 32, 3) and ex['image'].dtype == np.uint8
    np.testing.assert_array_equal(ex['image'], video['frames'][frame_of[j]])
    assert (ex['index'], ex['video'], ex['frame']) == (i, v, frame_of[j])
    want = video['label'] if video['mask'][frame_of[j]] else NORMAL
    assert ex['label'] == want == labels[i]
    assert all(ex[k].dtype == np.int32 for k in ('label', 'index', 'video', 'frame'))
    assert src.eval_transform(ex) is ex and src.train_transform(ex, np.random.default_rng(0)) is ex
  with pytest.raises(IndexError):
    src[32]
  # examples are copies: changing one leaves the source intact
  ex = src[0]
  ex['image'][:] = 0
  np.testing.assert_array_equal(src[0]['image'], rendered[0]['frames'][1])


def test_label_modes(rendered):
  window = SyntheticFrames(SPEC, 'train', 8).labels()
  video = SyntheticFrames(SPEC, 'train', 8, label_mode='video').labels()
  vids = np.array([r['label'] for r in rendered])
  np.testing.assert_array_equal(video, np.repeat(vids, 8))
  masks = np.concatenate([r['mask'] for r in rendered])
  np.testing.assert_array_equal(window, np.where(masks == 1, np.repeat(vids, 8), NORMAL))
  # the spec has anomalous videos whose frames get both labels: the modes really differ
  assert np.any((window == NORMAL) & (video != NORMAL)) and np.any(window != NORMAL)
  with pytest.raises(ValueError, match='label_mode'):
    SyntheticFrames(SPEC, 'train', 2, label_mode='clip')


def test_renders_once_under_threads(monkeypatch):
  calls = []
  real = SyntheticFrames._render

  def counting(self):
    calls.append(threading.get_ident())
    return real(self)
  monkeypatch.setattr(SyntheticFrames, '_render', counting)
  src = SyntheticFrames(SPEC, 'test', 2, render_threads=2)
  with ThreadPoolExecutor(4) as pool:
    out = list(pool.map(lambda i: src[i]['image'], range(len(src))))
  assert len(calls) == 1
  ref = SyntheticVideos(SPEC, 'test')
  np.testing.assert_array_equal(out[5], ref[2]['frames'][frame_indices(8, 2)[1]])


def test_pickle_drops_pixels_and_lock():
  src = SyntheticFrames(SPEC, 'validation', 2)
  first = src[3]
  blob = pickle.dumps(src)
  assert len(blob) < 32 * 32 * 3                  # not the rendered frames
  back = pickle.loads(blob)
  assert back._pixels is None
  for k, v in back[3].items():
    np.testing.assert_array_equal(v, first[k])
  np.testing.assert_array_equal(back.labels(), src.labels())


def test_leak_check():
  srcs = {s: SyntheticFrames(SPEC, s, 2) for s in ('train', 'validation', 'test')}
  check_sources_disjoint(srcs)
  ids = srcs['train'].video_ids()
  assert len(ids) == len(srcs['train']) and ids[:3] == ['synthetic-5/train/0'] * 2 + [
      'synthetic-5/train/1']
  assert SyntheticFrames(SPEC, 'train', 4).video_ids()[::4] == ids[::2]   # same videos, same ids
  with pytest.raises(SplitLeak, match='synthetic-5/train/0'):
    check_sources_disjoint({'train': srcs['train'],
                            'validation': SyntheticFrames(SPEC, 'train', 4)})
  # another seed's train split holds other videos
  other = SyntheticFrames(SyntheticSpec(**{**SPEC.__dict__, 'seed': 6}), 'train', 2)
  check_sources_disjoint({'train': srcs['train'], 'validation': other})
  assert frames_mod.__all__ == ['SyntheticFrames', 'frame_indices', 'event_window']


# -- class-balanced sampling ----------------------------------------------------------------------

class _Labelled:
  """Minimal source: example i = {'index': i, 'label': labels[i]}."""

  def __init__(self, labels):
    self._labels = np.asarray(labels, np.int32)

  def __len__(self):
    return len(self._labels)

  def __getitem__(self, i):
    return {'index': int(i), 'label': int(self._labels[i])}

  def labels(self):
    return self._labels


IMBALANCED = np.repeat(np.arange(4), [400, 40, 8, 2])   # 450 examples, ratio 200


def test_class_weights():
  y = np.array([0, 0, 0, 1, 2, 2])
  np.testing.assert_allclose(class_weights(y, 0.0), np.full(6, 1 / 6))
  np.testing.assert_allclose(class_weights(y, 1.0), [1 / 9] * 3 + [1 / 3] + [1 / 6] * 2)
  w = np.array([3, 3, 3, 1, 2, 2]) ** -0.5
  np.testing.assert_allclose(class_weights(y, 0.5), w / w.sum())
  assert class_weights(y).dtype == np.float64
  w = class_weights(IMBALANCED, 1.0)
  np.testing.assert_allclose(np.bincount(IMBALANCED, weights=w), np.full(4, 0.25))
  # classes missing from the labels (here class 1) get no weight and do not distort the others
  np.testing.assert_allclose(class_weights([0, 2, 2, 2], 1.0), [0.5, 1 / 6, 1 / 6, 1 / 6])


@pytest.mark.parametrize('power', [1.0, 0.0])
def test_weighted_frequencies(power):
  src = _Labelled(IMBALANCED)
  ds = weighted_dataset(src, src.labels(), power, seed=3)
  assert isinstance(ds, grain.MapDataset) and len(ds) >= 2 ** 61
  n = 20 * len(src)                                 # 20 epochs
  idx = np.array([ds[p]['index'] for p in range(n)])
  freq = np.bincount(IMBALANCED[idx], minlength=4) / n
  want = np.full(4, 0.25) if power else np.bincount(IMBALANCED) / len(IMBALANCED)
  np.testing.assert_allclose(freq, want, atol=0.02)  # binomial std <= 0.005 at n = 9000
  if power:
    assert len(np.unique(idx)) > 100                # drawn from many examples, not a few


def test_weighted_is_deterministic_per_position():
  src = _Labelled(IMBALANCED)
  n = len(src)
  a = weighted_dataset(src, src.labels(), 1.0, seed=7)
  b = weighted_dataset(src, None, 1.0, seed=7)             # labels default to source.labels()
  positions = [5 * n + 3, 3, 2 * n - 1, 10 ** 12, 0, 5 * n + 4]   # any order, far epochs
  got = [a[p]['index'] for p in positions]
  assert got == [b[p]['index'] for p in reversed(positions)][::-1]
  w = class_weights(IMBALANCED)
  assert got[0] == epoch_indices(w, 7, 5)[3] and got[1] == epoch_indices(w, 7, 0)[3]
  assert got[3] == epoch_indices(w, 7, 10 ** 12 // n)[10 ** 12 % n]
  np.testing.assert_array_equal(epoch_indices(w, 7, 1), epoch_indices(w, 7, 1))
  assert not np.array_equal(epoch_indices(w, 7, 0), epoch_indices(w, 7, 1))   # epochs differ
  c = weighted_dataset(src, src.labels(), 1.0, seed=8)
  assert [c[p]['index'] for p in range(20)] != [a[p]['index'] for p in range(20)]
  # per-process slices are interleaved parts of the one stream
  odd = a[1::2]
  assert [odd[i]['index'] for i in range(5)] == [a[p]['index'] for p in (1, 3, 5, 7, 9)]
  # pickled (grain worker processes) without its cache, same stream
  back = pickle.loads(pickle.dumps(a))
  assert [back[p]['index'] for p in positions] == got


def test_weighted_iterator_checkpoints_and_frames():
  src = SyntheticFrames(SPEC, 'train', 2)
  ds = weighted_dataset(src, src.labels(), 1.0, seed=0).map(
      lambda e: {'image': e['image'], 'label': e['label'], 'index': e['index']}).batch(4)
  it = iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=2)))
  for _ in range(3):
    next(it)
  state = it.get_state()
  after = [next(it)['index'] for _ in range(3)]
  it2 = iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=2)))
  it2.set_state(state)
  np.testing.assert_array_equal(np.stack(after), np.stack([next(it2)['index'] for _ in range(3)]))
  batch = next(it2)
  assert batch['image'].shape == (4, 32, 32, 3) and batch['image'].dtype == np.uint8
  for img, i, y in zip(batch['image'], batch['index'], batch['label']):
    np.testing.assert_array_equal(img, src[i]['image'])
    assert y == src.labels()[i]
