"""Feature extraction from prepared datasets (vad_jax.extract.prepared): the RTFM layout, the
snippet rule, ten crops, the ground truth, atomic output; and the violence system on RWF-2000
through the 'prepared_features' source."""

import os

import numpy as np
import pytest

from configs import violence
from tests import fixtures
from vad_jax.data.prepared import PreparedVideos
from vad_jax.data.sources import prepare_spec
from vad_jax.extract import prepared as ext
from vad_jax.extract.synthetic import make_extractor
from vad_jax.prepare import builder


@pytest.fixture(scope='module')
def ucf(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('extract')
  raw_dir, out = str(tmp / 'raw'), str(tmp / 'prepared')
  fixtures.ucf_crime_tree(raw_dir, num_frames=60)
  spec = builder.PrepareSpec('ucf_crime', 32, 32, 10.0)
  builder.prepare(spec, raw_dir, out, workers=1, progress=False)
  return out, spec, tmp


def test_snippets_lists_and_gt(ucf):
  out, spec, tmp = ucf
  feats = str(tmp / 'feats16')
  meta = ext.extract(out, spec, 'descriptor', feats, snippet=4, progress=False)
  assert meta['splits']['test']['gt']
  desc = make_extractor('descriptor')
  for split in ('train', 'test'):
    src = PreparedVideos(out, spec, split)
    with open(os.path.join(feats, f'{split}.list')) as f:
      paths = f.read().split()
    labels = {n: int(l) for n, l in zip(src.names, src.labels())}
    names = [os.path.basename(p)[:-4] for p in paths]
    anomalous = [labels[n] != 0 for n in names]
    assert anomalous == sorted(anomalous, reverse=True)          # RTFM: anomalous first
    gts = []
    for name, path in zip(names, paths):
      i = src.names.index(name)
      example = src.eval_transform(src[i])
      video = example['video']
      frame = desc(video[None])[0]                                 # independent per-frame pass
      t = len(video) // 4
      expected = frame[:t * 4].reshape(t, 4, -1).mean(1)
      np.testing.assert_allclose(np.load(path), expected, rtol=1e-5, atol=1e-5)
      if split == 'test':
        m = np.zeros(t * 4, np.uint8)
        m[:min(t * 4, len(example['mask']))] = example['mask'][:t * 4]
        gts.append(m)
    if split == 'test':
      np.testing.assert_array_equal(np.load(os.path.join(feats, 'gt-test.npy')),
                                    np.concatenate(gts))


def test_output_is_atomic_and_not_overwritten(ucf):
  out, spec, tmp = ucf
  feats = tmp / 'taken'
  feats.mkdir()
  (feats / 'mine.txt').write_text('keep me')
  with pytest.raises(FileExistsError, match='--overwrite'):
    ext.extract(out, spec, 'descriptor', str(feats), progress=False)
  assert (feats / 'mine.txt').read_text() == 'keep me'
  with pytest.raises(ValueError, match='crops=1'):
    ext.extract(out, spec, 'descriptor', str(tmp / 'ten'), crops=10, progress=False)
  assert not os.path.exists(tmp / 'ten')


def test_ten_crops_geometry():
  v = np.arange(2 * 8 * 16 * 3, dtype=np.uint8).reshape(2, 8, 16, 3)
  crops = ext.ten_crops(v)
  assert len(crops) == 10 and all(c.shape == (2, 7, 14, 3) for c in crops)
  np.testing.assert_array_equal(crops[0], v[:, :7, :14])          # top-left
  np.testing.assert_array_equal(crops[3], v[:, 1:, 2:])           # bottom-right
  np.testing.assert_array_equal(crops[5], v[:, :7, :14][:, :, ::-1])


def test_violence_trains_on_prepared_rwf2000(tmp_path):
  from vad_jax.train import loop
  raw_dir, out = str(tmp_path / 'raw'), str(tmp_path / 'prepared')
  fixtures.rwf2000_tree(raw_dir, per_class=8)
  c = violence.get_config('rwf2000_local')
  c.data.data_dir = out
  spec = prepare_spec(c)
  builder.prepare(spec, raw_dir, out, workers=1, progress=False)
  t = violence.get_config('tiny')
  c.model = t.model
  c.data.clip_len = 8
  for key in ('batch_size', 'num_steps', 'log_every', 'eval_batch_size'):
    c[key] = t[key]
  c.num_steps, c.eval_every, c.checkpoint_every = 4, 2, 2
  c.optim.warmup_steps = 1
  c.monitors.class_gap.start_step = 1
  metrics = loop.train_and_evaluate(c, str(tmp_path / 'run'))
  assert 0.0 <= metrics['balanced_accuracy'] <= 1.0
  preds = np.load(tmp_path / 'run' / 'predictions_test.npz')
  assert len(preds['index']) == 16                            # the official val split (8 + 8)
  cache = os.path.join(out, 'vad_features', spec.name)
  assert len(os.listdir(cache)) == 1                          # extracted once, cached
