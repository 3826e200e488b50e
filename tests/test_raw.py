"""Raw dataset indexing: found by name at any depth, the same items whatever the nesting, and
structure errors (missing files, duplicates, leaks, unknown classes) naming file and line."""

import dataclasses
import os
import shutil

import numpy as np
import pytest

from tests import fixtures
from vad_jax.classes import CLASS_NAMES
from vad_jax.data.splits import SplitLeak
from vad_jax.prepare import raw


def _portable(items):
  """Items without their folders (paths -> basenames, where -> basename[:line])."""
  return [dataclasses.replace(it, paths=tuple(os.path.basename(p) for p in it.paths),
                              where=os.path.basename(it.where)) for it in items]


@pytest.fixture(scope='module')
def ucf(tmp_path_factory):
  root = tmp_path_factory.mktemp('ucf')
  tree = fixtures.ucf_crime_tree(str(root / 'a'))
  fixtures.ucf_crime_tree(str(root / 'b'), nesting='downloads/UCF-Crime v2/Anomaly-Videos',
                          mp4_suffix_in_annotation=False)
  return root, tree


def _copy(src, tmp_path):
  dst = tmp_path / 'raw'
  shutil.copytree(src, dst)
  return dst


def test_ucf_crime_items_do_not_depend_on_nesting(ucf):
  root, tree = ucf
  a = raw.ucf_crime(str(root / 'a'), val_fraction=0.34, seed=3)
  b = raw.ucf_crime(str(root / 'b'), val_fraction=0.34, seed=3)
  assert _portable(a) == _portable(b)
  assert a == sorted(a, key=lambda it: (it.split, it.name))
  names = {it.split: set() for it in a}
  for it in a:
    names[it.split].add(it.name)
  assert names['train'] | names['validation'] == set(tree['train'])
  assert names['test'] == set(tree['test'])
  assert {it.label for it in a if it.split == 'validation'} == {'Normal', 'Fighting', 'Explosion'}
  for it in a:
    assert it.kind == 'video' and len(it.paths) == 1 and it.frame_numbers is None
    stem = it.name[:-len('_x264')].rstrip('0123456789')
    assert it.label == ('Normal' if it.name.startswith('Normal') else stem)
    if it.split == 'test':          # 1-based inclusive runs of the rendered mask
      mask = np.zeros(48, np.uint8)
      for s, e in it.intervals:
        mask[s - 1:e] = 1
      np.testing.assert_array_equal(mask, tree['masks'][it.name])
      assert ('Temporal_Anomaly_Annotation' in it.where) and ':' in it.where
    else:
      assert it.intervals is None and 'Anomaly_Train.txt:' in it.where


def test_ucf_crime_missing_and_ambiguous_list_files(ucf, tmp_path):
  raw_dir = _copy(ucf[0] / 'a', tmp_path)
  notes = next(raw_dir.rglob('Temporal_Anomaly_Annotation*.txt'))
  shutil.copy(notes, raw_dir / 'Temporal_Anomaly_Annotation_copy.txt')
  with pytest.raises(ValueError, match='2 files match .*Temporal_Anomaly_Annotation_copy'):
    raw.ucf_crime(str(raw_dir))
  os.remove(raw_dir / 'Temporal_Anomaly_Annotation_copy.txt')
  os.remove(notes)
  with pytest.raises(FileNotFoundError, match='Temporal_Anomaly_Annotation'):
    raw.ucf_crime(str(raw_dir))
  os.remove(next(raw_dir.rglob('Anomaly_Train.txt')))
  with pytest.raises(FileNotFoundError, match='Anomaly_Train'):
    raw.ucf_crime(str(raw_dir))


def test_ucf_crime_missing_videos_name_the_line(ucf, tmp_path):
  raw_dir = _copy(ucf[0] / 'a', tmp_path)
  train_list = next(raw_dir.rglob('Anomaly_Train.txt'))
  lines = train_list.read_text().splitlines()
  train_list.write_text('\n'.join(lines + ['Abuse/Abuse999_x264.mp4']) + '\n')
  with pytest.raises(FileNotFoundError,
                     match=rf'Anomaly_Train\.txt:{len(lines) + 1}: video .*Abuse999'):
    raw.ucf_crime(str(raw_dir))
  train_list.write_text('\n'.join(lines) + '\n')
  victim = next(raw_dir.rglob('Explosion101_x264.mp4'))
  os.remove(victim)
  notes = r'Temporal_Anomaly_Annotation_for_Testing_Videos\.txt'
  with pytest.raises(FileNotFoundError, match=notes + r':\d+: .*Explosion101'):
    raw.ucf_crime(str(raw_dir))


def test_ucf_crime_unknown_class_names_the_line(ucf, tmp_path):
  raw_dir = _copy(ucf[0] / 'a', tmp_path)
  src = next(raw_dir.rglob('Fighting001_x264.mp4'))
  shutil.copy(src, src.parent / 'Brawl001_x264.mp4')
  train_list = next(raw_dir.rglob('Anomaly_Train.txt'))
  n = len(train_list.read_text().splitlines())
  with open(train_list, 'a') as f:
    f.write('Fighting/Brawl001_x264.mp4\n')
  with pytest.raises(ValueError, match=rf'Anomaly_Train\.txt:{n + 1}: cannot tell the class'):
    raw.ucf_crime(str(raw_dir))


def test_index_files_refuses_duplicate_basenames(tmp_path):
  for sub in ('x', 'y/z'):
    os.makedirs(tmp_path / sub)
    (tmp_path / sub / 'A001_x264.mp4').write_bytes(b'')
  (tmp_path / 'x' / 'B.MP4').write_bytes(b'')
  (tmp_path / 'x' / 'notes.txt').write_bytes(b'')
  with pytest.raises(ValueError, match=r'A001_x264\.mp4.*x[/\\]A001.*z[/\\]A001|'
                                       r'A001_x264\.mp4.*z[/\\]A001.*x[/\\]A001'):
    raw.index_files(str(tmp_path), ('.mp4',))
  os.remove(tmp_path / 'y' / 'z' / 'A001_x264.mp4')
  assert sorted(raw.index_files(str(tmp_path), ('.mp4',))) == ['A001_x264.mp4', 'B.MP4']


@pytest.fixture(scope='module')
def kaggle(tmp_path_factory):
  root = tmp_path_factory.mktemp('kaggle')
  tree = fixtures.kaggle_frames_tree(str(root / 'a'), num_frames=120)
  fixtures.kaggle_frames_tree(str(root / 'b' / 'archive (3)' / 'data'), num_frames=120)
  return root, tree


def test_kaggle_frames_order_nesting_and_case(kaggle, tmp_path):
  root, tree = kaggle
  a = raw.ucf_crime_frames(str(root / 'a'))
  assert _portable(a) == _portable(raw.ucf_crime_frames(str(root / 'b')))
  assert {it.name for it in a if it.split == 'test'} == set(tree['test'])
  assert {it.name for it in a if it.split != 'test'} == set(tree['train'])
  for it in a:
    assert it.kind == 'frames' and it.intervals is None
    assert it.frame_numbers == tuple(range(0, 120, 10))           # 100 after 90, not after 10
    assert [int(p.rsplit('_', 1)[1][:-4]) for p in it.paths] == list(it.frame_numbers)
    assert it.label in ('Normal', 'Fighting')
  lower = _copy(root / 'a', tmp_path)                             # any case of the folders
  os.rename(lower / 'Train', lower / 'train')
  os.rename(lower / 'train' / 'Fighting', lower / 'train' / 'fighting')
  (lower / 'train' / 'fighting' / 'Thumbs.db').write_bytes(b'')   # ignored, counted
  def unplaced(items):
    return [dataclasses.replace(it, where='') for it in _portable(items)]
  assert unplaced(raw.ucf_crime_frames(str(lower))) == unplaced(a)


def test_kaggle_test_truth_from_an_annotation_file(kaggle, tmp_path):
  raw_dir = _copy(kaggle[0] / 'a', tmp_path)
  (raw_dir / 'Temporal_Anomaly_Annotation_for_Testing_Videos.txt').write_text(
      'Fighting100_x264.mp4  Fighting  21  55  -1  -1\n'
      'Normal_Videos_test000_x264.mp4  Normal  -1  -1  -1  -1\n')
  items = {it.name: it for it in raw.ucf_crime_frames(str(raw_dir)) if it.split == 'test'}
  assert items['Fighting100_x264'].intervals == ((21, 55),)
  assert items['Normal_Videos_test000_x264'].intervals == ()
  assert items['Normal_Videos_test001_x264'].intervals == ()      # normal, no line
  assert items['Fighting101_x264'].intervals is None              # anomalous, no line: unknown


def test_kaggle_structure_errors(kaggle, tmp_path):
  raw_dir = _copy(kaggle[0] / 'a', tmp_path)
  src = next((raw_dir / 'Train' / 'Fighting').glob('Fighting000_x264_*.png'))
  shutil.copy(src, raw_dir / 'Train' / 'NormalVideos')            # one video, two classes
  with pytest.raises(ValueError, match='Fighting000_x264.*Fighting.*NormalVideos|'
                                       'Fighting000_x264.*NormalVideos.*Fighting'):
    raw.ucf_crime_frames(str(raw_dir))
  os.remove(raw_dir / 'Train' / 'NormalVideos' / src.name)
  shutil.copy(src, raw_dir / 'Test' / 'Fighting')                 # one video, two splits
  with pytest.raises(SplitLeak, match='Fighting000_x264'):
    raw.ucf_crime_frames(str(raw_dir))
  os.remove(raw_dir / 'Test' / 'Fighting' / src.name)
  os.makedirs(raw_dir / 'Test' / 'Brawl')
  shutil.copy(src, raw_dir / 'Test' / 'Brawl')
  with pytest.raises(ValueError, match='unknown class folder .*Brawl'):
    raw.ucf_crime_frames(str(raw_dir))


@pytest.fixture(scope='module')
def rwf(tmp_path_factory):
  root = tmp_path_factory.mktemp('rwf')
  tree = fixtures.rwf2000_tree(str(root / 'a'), per_class=4, num_frames=8)
  fixtures.rwf2000_tree(str(root / 'b' / 'x' / 'y'), per_class=4, num_frames=8)
  return root, tree


def test_rwf2000_split_and_label_mapping(rwf, tmp_path):
  root, tree = rwf
  a = raw.rwf2000(str(root / 'a'), val_fraction=0.25, seed=0)
  assert _portable(a) == _portable(raw.rwf2000(str(root / 'b'), val_fraction=0.25, seed=0))
  test = [it for it in a if it.split == 'test']
  assert sorted(it.name for it in test) == sorted(tree['test'])
  assert all(os.sep + 'val' + os.sep in it.paths[0] for it in test)
  val = [it for it in a if it.split == 'validation']
  assert sorted(it.label for it in val) == ['NonViolent', 'Violent']   # 1 of 4 per class
  assert all(os.sep + 'train' + os.sep in it.paths[0] for it in val)
  for it in a:
    assert it.label == ('Violent' if it.name.startswith('Fight') else 'NonViolent')
    assert it.intervals is None and it.kind == 'video'
  upper = _copy(root / 'a', tmp_path)
  os.rename(upper / 'RWF-2000' / 'train', upper / 'RWF-2000' / 'TRAIN')
  os.rename(upper / 'RWF-2000' / 'val' / 'NonFight', upper / 'RWF-2000' / 'val' / 'nonfight')
  assert _portable(raw.rwf2000(str(upper), 0.25, 0)) == _portable(a)


def test_validation_carve_is_deterministic_and_stratified(ucf, rwf):
  for fn, root in ((raw.ucf_crime, ucf[0] / 'a'), (raw.rwf2000, rwf[0] / 'a')):
    one = fn(str(root), val_fraction=0.5, seed=7)
    assert one == fn(str(root), val_fraction=0.5, seed=7)
    train = [it for it in one if it.split in ('train', 'validation')]
    for label in {it.label for it in train}:
      members = [it for it in train if it.label == label]
      n_val = sum(it.split == 'validation' for it in members)
      assert n_val == min(max(round(0.5 * len(members)), 1), len(members) - 1)
    seeds = {tuple(it.name for it in fn(str(root), 0.5, s) if it.split == 'validation')
             for s in range(6)}
    assert len(seeds) > 1
    assert not [it for it in fn(str(root), 0.0, 0) if it.split == 'validation']


def test_datasets_registry():
  assert raw.DATASETS == {'ucf_crime': (raw.ucf_crime, CLASS_NAMES),
                          'ucf_crime_frames': (raw.ucf_crime_frames, CLASS_NAMES),
                          'rwf2000': (raw.rwf2000, ('NonViolent', 'Violent'))}
