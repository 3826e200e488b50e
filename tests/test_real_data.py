"""Real data end to end: fixture trees in the published layouts -> the README's prepare command
-> train -> evaluate, for UCF-Crime videos, the Kaggle frame folders and the published feature
lists; resumable preparation, nothing half-written, bad files skipped and counted."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import hybrid
from tests import fixtures
from vad_jax.data import video as video_lib
from vad_jax.data.prepared import PreparedVideos
from vad_jax.data.sources import prepare_spec
from vad_jax.prepare import builder, raw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny(variant: str):
  """A real-data variant with the :tiny model, batch and schedule (8 fake devices)."""
  c, t = hybrid.get_config(variant), hybrid.get_config('tiny')
  for key in ('num_classes', 'lstm_hidden', 'lstm_layers', 'num_heads', 'ff_dim',
              'transformer_layers', 'head_hidden', 'reg_dim', 'vae_latent', 'horizon'):
    c.model[key] = t.model[key]
  for key in ('width_mult', 'depth_mult', 'frozen_stages', 'depthwise_impl'):
    c.model.trunk[key] = t.model.trunk[key]
  c.model.dtype = 'float32'
  for key in ('batch_size', 'num_steps', 'log_every', 'eval_every', 'checkpoint_every',
              'eval_batch_size'):
    c[key] = t[key]
  for key in ('clip_len', 'clips_per_video', 'eval_stride'):
    c.data[key] = t.data[key]
  c.optim.warmup_steps = 1
  c.data.worker_threads = 1
  return c


@pytest.fixture(scope='module')
def ucf(tmp_path_factory):
  """A UCF-Crime tree (nested as a re-zipped archive), prepared with the README's command
  after an interrupted first attempt (stage 1 stopped after 3 videos)."""
  tmp = tmp_path_factory.mktemp('ucf')
  raw_dir, out = str(tmp / 'raw'), str(tmp / 'prepared')
  tree = fixtures.ucf_crime_tree(raw_dir, nesting='download/UCF_Crimes-v2/UCF_Crimes')
  config = hybrid.get_config('ucf_crime_local')
  config.data.data_dir = out
  spec = prepare_spec(config)
  items = raw.ucf_crime(raw_dir, val_fraction=spec.val_fraction, seed=spec.seed)
  first = builder.decode_all(items[:3], spec, builder.work_dir(out, spec), 1, progress=False)
  with pytest.raises(FileNotFoundError, match='python -m vad_jax.prepare ucf_crime'):
    PreparedVideos(out, spec, 'train')            # interrupted: nothing readable yet
  proc = subprocess.run(
      [sys.executable, '-m', 'vad_jax.prepare', 'ucf_crime', f'--manual_dir={raw_dir}',
       f'--data_dir={out}', '--height=32', '--width=32', '--workers=1'],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return dict(tree=tree, out=out, spec=spec, items=items, first=first, log=proc.stderr,
              stdout=proc.stdout, config=config)


def test_prepare_resumes_and_records_the_splits(ucf):
  assert ucf['first']['decoded'] == 3
  assert 'resuming: 3 of' in ucf['log']
  assert '--config.data.data_dir=' in ucf['stdout']
  with open(builder.index_path(ucf['out'], ucf['spec'])) as f:
    index = json.load(f)
  splits = index['splits']
  assert sorted(splits['test']['names']) == sorted(ucf['tree']['test'])
  train_val = splits['train']['names'] + splits['validation']['names']
  assert sorted(train_val) == sorted(ucf['tree']['train'])
  assert not set(splits['train']['names']) & set(splits['validation']['names'])
  assert not os.path.exists(builder.work_dir(ucf['out'], ucf['spec']))   # cleaned after success


def test_prepared_frames_and_truth_follow_the_frame_mapping(ucf):
  src = PreparedVideos(ucf['out'], ucf['spec'], 'test')
  assert len(src) == len(ucf['tree']['test'])
  for i, name in enumerate(src.names):
    ex = src.eval_transform(src[i])
    truth = ucf['tree']['masks'][name]                     # per source frame (30 fps)
    keep = video_lib.resample_indices(len(truth), 30.0, 10.0)
    np.testing.assert_array_equal(ex['mask'], truth[keep])
    assert ex['video'].shape == (len(keep), 32, 32, 3)
  train = PreparedVideos(ucf['out'], ucf['spec'], 'train', train_frames=20)
  ex = train.train_transform(train[0], np.random.default_rng(0))
  assert ex['video'].shape == (20, 32, 32, 3) and 'mask' not in ex   # weak labels only


def test_hybrid_trains_and_evaluates_on_prepared_ucf_crime(ucf, tmp_path):
  from vad_jax.train import loop
  c = _tiny('ucf_crime_local')
  c.data.data_dir = ucf['out']
  c.data.eval_window = 8            # 16-frame test videos: windows at 0, 6, 12 (stitched)
  metrics = loop.train_and_evaluate(c, str(tmp_path))
  assert 0.0 <= metrics['frame_auc'] <= 1.0
  assert 'video_auc' in metrics and 'frame_pr_auc' in metrics
  with open(tmp_path / 'metrics.json') as f:
    saved = json.load(f)
  assert 'validation_video_auc' in saved
  scores = np.load(tmp_path / 'scores_test.npz')
  assert int(scores['offsets'][-1]) == sum(
      len(video_lib.resample_indices(len(m), 30.0, 10.0)) for m in ucf['tree']['masks'].values())


def test_corrupt_video_is_skipped_and_counted(tmp_path):
  raw_dir, out = str(tmp_path / 'raw'), str(tmp_path / 'prepared')
  tree = fixtures.ucf_crime_tree(raw_dir)
  victim = sorted(p for p in raw.index_files(raw_dir, ('.mp4',)).values()
                  if os.path.basename(p).startswith('Fighting'))[0]
  fixtures.write_garbage(victim)
  spec = builder.PrepareSpec('ucf_crime', 32, 32, 10.0)
  builder.prepare(spec, raw_dir, out, workers=1, progress=False)
  with open(builder.index_path(out, spec)) as f:
    index = json.load(f)
  skipped = [s['name'] for s in index['skipped']]
  assert skipped == [os.path.splitext(os.path.basename(victim))[0]]
  assert victim in index['skipped'][0]['reason']
  kept = sum(len(v['names']) for v in index['splits'].values())
  assert kept == len(tree['names']) - 1


def test_kaggle_frames_prepare_into_videos(tmp_path):
  raw_dir, out = str(tmp_path / 'kaggle'), str(tmp_path / 'prepared')
  tree = fixtures.kaggle_frames_tree(raw_dir)
  spec = builder.PrepareSpec('ucf_crime_frames', 64, 64, None)
  builder.prepare(spec, raw_dir, out, workers=1, progress=False)
  test = PreparedVideos(out, spec, 'test')
  items = {it.name: it for it in raw.ucf_crime_frames(raw_dir) if it.split == 'test'}
  for i, name in enumerate(test.names):
    assert test.lengths()[i] == len(items[name].paths)
    ex = test.eval_transform(test[i])
    first = video_lib.read_frame_image(items[name].paths[0])
    assert np.abs(ex['video'][0].astype(int) - first).mean() < 6      # JPEG q90 of the PNG
  assert len(test) == len(tree['test'])


def _rtfm_tree(root, rng, n_per_class=8, feature_dim=8):
  """RTFM layout: <Video>_x264_i3d.npy of [T, 10, F], lists abnormal first, gt-ucf.npy."""
  os.makedirs(root, exist_ok=True)
  lists, gts = {}, []
  for split in ('train', 'test'):
    lines = []
    for kind in ('Fighting', 'Normal'):
      for i in range(n_per_class):
        t = int(rng.integers(20, 60))
        x = rng.normal(0, 1, (t, 10, feature_dim)).astype(np.float32)
        mask = np.zeros(t * 16, np.uint8)
        if kind == 'Fighting':
          a = int(rng.integers(0, t - 8))
          x[a:a + 8, :, 0] += 3.0                       # the event, visible in feature 0
          mask[a * 16:(a + 8) * 16] = 1
        name = (f'Fighting{i:03d}_x264' if kind == 'Fighting'
                else f'Normal_Videos_{split}{i:03d}_x264')
        path = os.path.join(root, f'{name}_i3d.npy')
        np.save(path, x)
        lines.append(path)
        if split == 'test':
          gts.append(mask)
    lists[split] = os.path.join(root, f'ucf-i3d{"-test" if split == "test" else ""}.list')
    with open(lists[split], 'w') as f:
      f.write('\n'.join(lines) + '\n')
  gt = os.path.join(root, 'gt-ucf.npy')
  np.save(gt, np.concatenate(gts))
  return lists, gt, np.concatenate(gts)


def test_hybrid_features_train_on_rtfm_lists(tmp_path):
  from vad_jax.train import loop
  lists, gt, truth = _rtfm_tree(str(tmp_path / 'feats'), np.random.default_rng(0))
  c = _tiny('features_local')
  c.data.train_list, c.data.test_list, c.data.gt = lists['train'], lists['test'], gt
  c.data.clip_len, c.data.clips_per_video = 4, 4          # bags of 16 segments
  c.data.eval_window = 0
  c.batch_size = 32                                        # 8 videos: one per fake device
  c.eval_batch_size = 8
  c.num_steps = 30
  c.optim.lr = 3e-3
  c.eval_every = c.checkpoint_every = 15
  metrics = loop.train_and_evaluate(c, str(tmp_path / 'run'))
  scores = np.load(tmp_path / 'run' / 'scores_test.npz')
  np.testing.assert_array_equal(scores['frame_labels'], truth)   # gt split per video, in order
  assert metrics['frame_auc'] > 0.8          # a 3-sigma event in one feature: easily learned
