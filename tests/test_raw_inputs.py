"""Bad raw input never crashes a preparation hours in: structure errors stop before decoding
and name the file (and line); undecodable files are skipped, counted and named. Plus the PyAV
frame-rate mapping on real encoded video."""

import os
import shutil

import numpy as np
import pytest

from tests import fixtures
from vad_jax.data import video
from vad_jax.data.splits import SplitLeak, carve_validation
from vad_jax.prepare import builder, raw


@pytest.fixture(scope='module')
def ucf_tree(tmp_path_factory):
  root = tmp_path_factory.mktemp('ucf_raw')
  fixtures.ucf_crime_tree(str(root / 'orig'))
  return root / 'orig'


def _copy(tree, tmp_path):
  dst = tmp_path / 'raw'
  shutil.copytree(tree, dst)
  return dst


def test_decode_keeps_the_mapped_frames(tmp_path):
  """Frame i carries brightness 4 i: the decoded 10 fps frames are source frames
  resample_indices(n, 30, 10); resized; non-ASCII path."""
  n = 40
  frames = np.repeat((np.arange(n) * 4).astype(np.uint8)[:, None, None, None], 32, 1)
  frames = np.repeat(np.repeat(frames, 48, 2), 3, 3)
  path = str(tmp_path / 'vidéo_监控.mp4')
  video.write_video(path, frames, 30.0)
  out, fps, total = video.decode(path, 10.0, (16, 24))
  keep = video.resample_indices(total, fps, 10.0)
  assert (total, fps, out.shape) == (n, 30.0, (len(keep), 16, 24, 3))
  np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), keep * 4, atol=3)   # H.264 is lossy


def test_bad_videos_raise_video_error_naming_the_file(tmp_path):
  garbage = str(tmp_path / 'garbage.mp4')
  fixtures.write_garbage(garbage)
  with pytest.raises(video.VideoError, match='garbage.mp4'):
    video.decode(garbage)
  good = str(tmp_path / 'good.mp4')
  video.write_video(good, np.zeros((30, 16, 16, 3), np.uint8), 30.0)
  fixtures.truncate_file(good, 0.05)            # only the header survives
  with pytest.raises(video.VideoError, match='good.mp4'):
    video.decode(good)
  empty = str(tmp_path / 'empty.mp4')
  open(empty, 'wb').close()                     # zero frames (and zero bytes)
  with pytest.raises(video.VideoError, match='empty.mp4'):
    video.decode(empty)
  png = str(tmp_path / 'frame_10.png')
  from PIL import Image
  Image.fromarray(np.full((64, 64, 3), 100, np.uint8)).save(png)
  fixtures.truncate_file(png, 0.5)
  with pytest.raises(video.VideoError, match='frame_10.png'):
    video.read_frame_image(png)


def test_missing_listed_video_names_the_list_line(ucf_tree, tmp_path):
  raw_dir = _copy(ucf_tree, tmp_path)
  victim = next(p for p in raw.index_files(str(raw_dir), ('.mp4',)).values()
                if 'Explosion001' in p)
  os.remove(victim)
  with pytest.raises(FileNotFoundError, match=r'Anomaly_Train\.txt:\d+: video .*Explosion001'):
    raw.ucf_crime(str(raw_dir))


def test_duplicate_names_and_leaks_are_refused(ucf_tree, tmp_path):
  raw_dir = _copy(ucf_tree, tmp_path)
  src = next(p for p in raw.index_files(str(raw_dir), ('.mp4',)).values() if 'Fighting001' in p)
  os.makedirs(raw_dir / 'copy')
  shutil.copy(src, raw_dir / 'copy')
  with pytest.raises(ValueError, match='duplicate video name .*Fighting001'):
    raw.ucf_crime(str(raw_dir))
  os.remove(raw_dir / 'copy' / os.path.basename(src))
  train_list = next(raw_dir.rglob('Anomaly_Train.txt'))
  with open(train_list, 'a') as f:
    f.write('Fighting/Fighting101_x264.mp4\n')               # a test video in training
  with pytest.raises(SplitLeak, match='Fighting101'):
    raw.ucf_crime(str(raw_dir))


def test_bad_annotation_line_names_file_and_line(ucf_tree, tmp_path):
  raw_dir = _copy(ucf_tree, tmp_path)
  notes = next(raw_dir.rglob('Temporal_Anomaly_Annotation*.txt'))
  lines = notes.read_text().splitlines()
  lines[1] = lines[1].replace('Fighting', 'Brawling') if 'Fighting' in lines[1] else \
      lines[1].split('  ')[0] + '  Brawling  5  9  -1  -1'
  notes.write_text('\n'.join(lines) + '\n')
  with pytest.raises(ValueError, match=r'Temporal_Anomaly_Annotation_for_Testing_Videos\.txt:2'):
    raw.ucf_crime(str(raw_dir))


def test_kaggle_video_in_train_and_test_is_refused(tmp_path):
  root = tmp_path / 'kaggle'
  fixtures.kaggle_frames_tree(str(root))
  items = raw.ucf_crime_frames(str(root))
  test_video = next(it for it in items if it.split == 'test')
  train_dir = root / 'Train' / ('NormalVideos' if test_video.label == 'Normal' else
                                test_video.label)
  shutil.copy(test_video.paths[0], train_dir)
  with pytest.raises(SplitLeak, match=test_video.name):
    raw.ucf_crime_frames(str(root))
  numbers = [it.frame_numbers for it in items]
  assert all(list(n) == sorted(n) for n in numbers) and max(len(n) for n in numbers) == 4


def test_truncated_png_skips_that_video(tmp_path):
  root, out = tmp_path / 'kaggle', str(tmp_path / 'out')
  fixtures.kaggle_frames_tree(str(root))
  items = raw.ucf_crime_frames(str(root))
  victim = next(it for it in items if it.split == 'train')
  fixtures.truncate_file(victim.paths[1], 0.3)
  spec = builder.PrepareSpec('ucf_crime_frames', 64, 64, None)
  builder.prepare(spec, str(root), out, workers=1, progress=False)
  import json
  with open(builder.index_path(out, spec)) as f:
    index = json.load(f)
  assert [s['name'] for s in index['skipped']] == [victim.name]
  assert os.path.basename(victim.paths[1]) in index['skipped'][0]['reason']


def test_validation_carve_is_seeded_and_stratified():
  labels = np.repeat(np.arange(3), [10, 20, 5])
  train, val = carve_validation(labels, 0.2, seed=1)
  np.testing.assert_array_equal(np.bincount(labels[val]), [2, 4, 1])
  assert not set(train) & set(val) and len(train) + len(val) == len(labels)
  np.testing.assert_array_equal(carve_validation(labels, 0.2, seed=1)[1], val)
  assert not np.array_equal(carve_validation(labels, 0.2, seed=2)[1], val)
