"""Feature extraction from prepared datasets (vad_jax.extract.prepared, python -m vad_jax.extract):
the RTFM layout, the snippet rule, ten crops, the ground truth, atomic output; and the violence
system on RWF-2000 through the 'prepared_features' source. Expected values are computed here
independently: the extractor on every decoded frame, then numpy."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import hybrid, violence
from tests import fixtures
from vad_jax.data.prepared import PreparedVideos
from vad_jax.data.sources import prepare_spec
from vad_jax.extract import prepared as ext
from vad_jax.extract.synthetic import make_extractor
from vad_jax.prepare import builder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMES = 120                           # source frames at 30 fps: 40 prepared frames at 10 fps


class GridMeans:
  """A frame-wise stand-in for a trunk: the mean colour of each cell of a 2x2 grid (F = 12), so
  crops and mirror images give different vectors. Records the shapes it is called with."""
  parallel = False
  batch = 3

  def __init__(self, fail_after: int = -1):
    self.shapes, self.fail_after = [], fail_after

  def fingerprint(self) -> str:
    return 'test/grid-means'

  def __call__(self, x: np.ndarray) -> np.ndarray:
    if len(self.shapes) == self.fail_after:
      raise RuntimeError('extractor failed')
    self.shapes.append(x.shape)
    h, w = x.shape[2] // 2, x.shape[3] // 2
    x = x.astype(np.float32)
    cells = (x[:, :, :h, :w], x[:, :, :h, w:], x[:, :, h:, :w], x[:, :, h:, w:])
    return np.concatenate([c.mean((2, 3)) for c in cells], -1)


@pytest.fixture(scope='module')
def ucf(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('extract')
  raw_dir, out = str(tmp / 'raw'), str(tmp / 'prepared')
  fixtures.ucf_crime_tree(raw_dir, num_frames=FRAMES)
  spec = prepare_spec(hybrid.get_config('ucf_crime_local'))     # 32x32, 10 fps
  builder.prepare(spec, raw_dir, out, workers=1, progress=False)
  return out, spec, tmp


def videos(out, spec, split):
  """{name: (uint8 [N, H, W, 3] every frame, label, mask or None)} decoded independently."""
  src = PreparedVideos(out, spec, split)
  got = {}
  for i, name in enumerate(src.names):
    e = src.eval_transform(src[i])
    got[name] = (e['video'], int(e['label']), e.get('mask'))
  return got


def read_list(path):
  with open(path) as f:
    return f.read().split()


def expected_gt(paths, vids, snippet, t_of):
  """RTFM's construction: per video in list order, T * snippet frames of its mask (0 past N)."""
  parts = []
  for p in paths:
    video, _, mask = vids[os.path.basename(p)[:-4]]
    m = np.zeros(t_of(len(video)) * snippet, np.uint8)
    k = min(len(m), len(mask))
    m[:k] = mask[:k]
    parts.append(m)
  return np.concatenate(parts)


def test_cli_snippets_lists_and_gt(ucf):
  """python -m vad_jax.extract, descriptor, 16-frame snippets: T = floor(N / 16), a snippet is
  the mean of its frames' vectors, RTFM lists (anomalous first), CSV lists, gt-test.npy."""
  out, spec, tmp = ucf
  feats = str(tmp / 'feats16')
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='')
  r = subprocess.run([sys.executable, '-m', 'vad_jax.extract',
                      '--config=configs/hybrid.py:ucf_crime_local', f'--data_dir={out}',
                      f'--out={feats}', '--snippet=16'], cwd=ROOT, env=env, capture_output=True,
                     text=True, timeout=120)
  assert r.returncode == 0, r.stderr[-3000:]
  assert (f'--config.data.train_list={feats}/train.list --config.data.test_list='
          f'{feats}/test.list --config.data.gt={feats}/gt-test.npy '
          '--config.data.snippet_frames=16') in r.stdout
  with open(os.path.join(feats, 'meta.json')) as f:
    meta = json.load(f)
  assert meta['snippet'] == 16 and meta['crops'] == 1 and meta['feature_dim'] == 148
  assert meta['extractor'] == make_extractor('descriptor').fingerprint()
  assert meta['spec']['height'] == 32 and not meta['splits']['train']['gt']
  desc = make_extractor('descriptor')
  for split in meta['splits']:
    vids = videos(out, spec, split)
    paths = read_list(os.path.join(feats, f'{split}.list'))
    assert sorted(os.path.basename(p)[:-4] for p in paths) == sorted(vids)
    assert all(os.path.isabs(p) for p in paths)
    anomalous = [vids[os.path.basename(p)[:-4]][1] != 0 for p in paths]
    assert anomalous == sorted(anomalous, reverse=True) and any(anomalous)
    with open(os.path.join(feats, f'{split}.csv')) as f:
      rows = [line.split(',') for line in f.read().split()[1:]]
    src = PreparedVideos(out, spec, split)
    assert [(p, c) for p, c in rows] == [
        (f'{split}/{n}.npy', src.class_names[vids[n][1]]) for n in src.names]
    for p in paths:
      video = vids[os.path.basename(p)[:-4]][0]
      assert len(video) == FRAMES // 3
      per_frame = desc(video[None])[0]                       # independent per-frame pass
      t = len(video) // 16
      x = np.load(p)
      assert x.dtype == np.float32 and x.shape == (t, 148)
      np.testing.assert_allclose(x, per_frame[:t * 16].reshape(t, 16, -1).mean(1), rtol=1e-5,
                                 atol=1e-6)
    if split == 'test':
      np.testing.assert_array_equal(np.load(os.path.join(feats, 'gt-test.npy')),
                                    expected_gt(paths, vids, 16, lambda n: n // 16))
  assert not glob.glob(feats + '.tmp-*')


def test_one_frame_snippets_and_short_videos(ucf):
  """snippet=1: one vector a frame (the violence system's layout); a video shorter than one
  snippet gives T = 1, the mean over its frames, and snippet frames of gt (zeros past its end)."""
  out, spec, tmp = ucf
  desc = make_extractor('descriptor')
  vids = videos(out, spec, 'test')
  ext.extract(out, spec, 'descriptor', str(tmp / 'f1'), snippet=1, splits=('test',),
              progress=False)
  ext.extract(out, spec, 'descriptor', str(tmp / 'f64'), snippet=64, splits=('test',),
              progress=False)
  assert not os.path.exists(tmp / 'f1' / 'train.list')
  for name, (video, _, _) in vids.items():
    per_frame = desc(video[None])[0]
    np.testing.assert_allclose(np.load(tmp / 'f1' / 'test' / f'{name}.npy'), per_frame,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.load(tmp / 'f64' / 'test' / f'{name}.npy'),
                               per_frame.mean(0, keepdims=True), rtol=1e-5, atol=1e-6)
  for d, s, t_of in (('f1', 1, lambda n: n), ('f64', 64, lambda n: 1)):
    paths = read_list(tmp / d / 'test.list')
    gt = np.load(tmp / d / 'gt-test.npy')
    assert gt.dtype == np.uint8 and gt.any()
    np.testing.assert_array_equal(gt, expected_gt(paths, vids, s, t_of))


def test_ten_crops_through_a_frame_wise_extractor(ucf):
  """crops=10: [T, 10, F], crop k = the mean over each snippet of the extractor's vectors of
  ten_crops(frames)[k]; frames batched across videos and crops in one fixed shape."""
  out, spec, tmp = ucf
  grid = GridMeans()
  meta = ext.extract(out, spec, grid, str(tmp / 'ten'), snippet=4, crops=10, batch_frames=10,
                     splits=('train', 'test'), progress=False)
  assert meta['extractor'] == 'test/grid-means' and meta['feature_dim'] == 12
  assert set(grid.shapes) == {(3, 4, 28, 28, 3)}                # 0.875 * 32 = 28; 3 x 4 frames
  for split in ('train', 'test'):
    for name, (video, _, _) in videos(out, spec, split).items():
      t = len(video) // 4
      views = ext.ten_crops(video[:t * 4])
      want = np.stack([GridMeans()(v[None])[0].reshape(t, 4, -1).mean(1) for v in views], 1)
      got = np.load(tmp / 'ten' / split / f'{name}.npy')
      assert got.shape == (t, 10, 12)
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
  # one crop through the same batching: equals the per-frame pass on the whole frames
  ext.extract(out, spec, GridMeans(), str(tmp / 'one'), snippet=1, batch_frames=7,
              splits=('test',), progress=False)
  # and videos shorter than one snippet: T = 1, the mean over all their frames
  ext.extract(out, spec, GridMeans(), str(tmp / 'short'), snippet=64, batch_frames=16,
              splits=('test',), progress=False)
  for name, (video, _, _) in videos(out, spec, 'test').items():
    per_frame = GridMeans()(video[None])[0]
    np.testing.assert_allclose(np.load(tmp / 'one' / 'test' / f'{name}.npy'), per_frame,
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.load(tmp / 'short' / 'test' / f'{name}.npy'),
                               per_frame.mean(0, keepdims=True), rtol=1e-5, atol=1e-4)


def test_ten_crops_geometry():
  v = np.arange(2 * 8 * 16 * 3, dtype=np.uint8).reshape(2, 8, 16, 3)
  crops = ext.ten_crops(v)
  assert len(crops) == 10 and all(c.shape == (2, 7, 14, 3) for c in crops)
  np.testing.assert_array_equal(crops[0], v[:, :7, :14])          # top-left
  np.testing.assert_array_equal(crops[1], v[:, :7, 2:])           # top-right
  np.testing.assert_array_equal(crops[2], v[:, 1:, :14])          # bottom-left
  np.testing.assert_array_equal(crops[3], v[:, 1:, 2:])           # bottom-right
  np.testing.assert_array_equal(crops[4], v[:, 0:7, 1:15])        # centre (floor offsets)
  for k in range(5):
    np.testing.assert_array_equal(crops[5 + k], crops[k][:, :, ::-1])


def test_output_is_atomic_and_not_overwritten(ucf):
  out, spec, tmp = ucf
  taken = tmp / 'taken'
  taken.mkdir()
  (taken / 'mine.txt').write_text('keep me')
  with pytest.raises(FileExistsError, match='--overwrite'):
    ext.extract(out, spec, 'descriptor', str(taken), progress=False)
  assert (taken / 'mine.txt').read_text() == 'keep me'
  with pytest.raises(ValueError, match='crops=1'):
    ext.extract(out, spec, 'descriptor', str(tmp / 'ten_desc'), crops=10, progress=False)
  with pytest.raises(RuntimeError, match='extractor failed'):      # fails mid-way
    ext.extract(out, spec, GridMeans(fail_after=2), str(tmp / 'broken'), snippet=1,
                batch_frames=8, progress=False)
  assert not os.path.exists(tmp / 'broken') and not glob.glob(str(tmp / 'broken.tmp-*'))
  ext.extract(out, spec, GridMeans(), str(taken), snippet=8, splits=('test',), overwrite=True,
              progress=False)
  assert sorted(os.listdir(taken)) == ['gt-test.npy', 'meta.json', 'test', 'test.csv',
                                       'test.list']
  # a builder that loses the race to the final name leaves the winner's folder intact
  other = tmp / 'other.tmp-1'
  other.mkdir()
  with pytest.raises(FileExistsError, match='appeared while extracting'):
    ext._publish(str(other), str(taken), overwrite=False)
  assert os.path.exists(taken / 'meta.json')


def test_violence_trains_on_prepared_rwf2000(tmp_path):
  """configs/violence.py:rwf2000_local end to end (tiny model): features extracted once on
  first use, cached beside the prepared data, reused by the second build."""
  from vad_jax.train import loop
  raw_dir, out = str(tmp_path / 'raw'), str(tmp_path / 'prepared')
  fixtures.rwf2000_tree(raw_dir, per_class=8)
  c = violence.get_config('rwf2000_local')
  assert c.data.source == 'prepared_features' and c.data.height == 32
  assert c.num_steps == 30 * -(-1440 // 64)                   # the epoch-derived schedule
  c.data.data_dir = out
  spec = prepare_spec(c)
  builder.prepare(spec, raw_dir, out, workers=1, progress=False)
  c.model.compress, c.model.lstm, c.model.dense = 16, (8, 8, 6), (8, 6)
  c.data.clip_len = 8
  c.batch_size = c.eval_batch_size = 16                       # 2 per fake test device
  c.num_steps, c.eval_every, c.checkpoint_every, c.log_every = 4, 2, 2, 1
  c.optim.warmup_steps = 1
  c.monitors.class_gap.start_step = 1
  metrics = loop.train_and_evaluate(c, str(tmp_path / 'run'))
  assert 0.0 <= metrics['balanced_accuracy'] <= 1.0
  preds = np.load(tmp_path / 'run' / 'predictions_test.npz')
  assert len(preds['index']) == 16                            # the official val split (8 + 8)
  cache = ext.cache_dir(c)
  assert os.listdir(os.path.dirname(cache)) == [os.path.basename(cache)]   # once, no tmp left
  with open(os.path.join(cache, 'meta.json')) as f:
    meta = json.load(f)
  assert meta['snippet'] == 1 and meta['crops'] == 1
  assert set(meta['splits']) == {'train', 'validation', 'test'}
  x = np.load(os.path.join(cache, 'test', 'Fight_val_000.npy'))
  assert x.shape == (10, 148)                                  # 30 frames at 30 fps -> 10
  mtime = os.path.getmtime(os.path.join(cache, 'meta.json'))
  src = ext.source_from_config(c, 'validation', {})
  assert len(src) == 2 and os.path.getmtime(os.path.join(cache, 'meta.json')) == mtime
