"""YOLO label trees as a detection source (vad_jax.data.yolo)."""

from __future__ import annotations

import os
import pickle

import ml_collections
import numpy as np
import pytest
from PIL import Image

from vad_jax.data import yolo
from vad_jax.data.splits import check_sources_disjoint


def _image(path, size=(40, 30), color=(200, 10, 10), mode='RGB'):
  """Writes a PNG of `size` (w, h), left half `color`, right half black."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  a = np.zeros((size[1], size[0], 3), np.uint8)
  a[:, :size[0] // 2] = color
  Image.fromarray(a).convert(mode).save(path)


def _label(path, lines):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')


def _tree(root, split='train', items=None):
  """items: {relative stem: label lines, or None for no label file}."""
  for stem, lines in items.items():
    _image(os.path.join(root, 'images', split, stem + '.png'))
    if lines is not None:
      _label(os.path.join(root, 'labels', split, stem + '.txt'), lines)
  os.makedirs(os.path.join(root, 'labels', split), exist_ok=True)
  return str(root)


def test_parse_round_trip(tmp_path):
  path = tmp_path / 'a.txt'
  path.write_text('0 0.5 0.5 0.2 0.4\n\n1 0.25 0.25 0.1 0.1\r\n   0 0.1 0.2 0.2 0.2   \n'
                  '0 0.9995 0.5 0.002 0.2\n')
  boxes, dropped = yolo.parse_label_file(path, keep_classes=(0,))
  assert boxes.dtype == np.float32 and dropped == 1
  np.testing.assert_allclose(boxes, [[0.4, 0.3, 0.6, 0.7], [0.0, 0.1, 0.2, 0.3],
                                     [0.9985, 0.4, 1.0, 0.6]], atol=1e-6)   # within tol: clipped
  everything, dropped = yolo.parse_label_file(path, keep_classes=None)
  assert len(everything) == 4 and dropped == 0
  np.testing.assert_allclose(everything[1], [0.2, 0.2, 0.3, 0.3], atol=1e-6)
  (tmp_path / 'empty.txt').write_text('\n  \n')
  boxes, dropped = yolo.parse_label_file(tmp_path / 'empty.txt')
  assert boxes.shape == (0, 4) and dropped == 0


BAD = {  # line -> a fragment of its reason
    '0 0.5 0.5 0.2': 'expected 5 columns',
    '0 0.5 0.5 0.2 0.2 0.3': 'expected 5 columns',
    '0 0.5 abc 0.2 0.2': 'non-numeric',
    '1.5 0.5 0.5 0.2 0.2': 'non-negative integer',
    '-1 0.5 0.5 0.2 0.2': 'non-negative integer',
    '0 1.2 0.5 0.2 0.2': 'in [0, 1]',
    '0 0.5 0.5 -0.2 0.2': 'must be > 0',
    '0 0.5 0.5 0.2 0': 'must be > 0',
    '0 0.95 0.5 0.2 0.2': 'beyond the image',
    '0 0.5 0.05 0.2 0.2': 'beyond the image',
}


def test_every_bad_line_is_reported(tmp_path):
  path = tmp_path / 'bad.txt'
  lines = ['0 0.5 0.5 0.2 0.2'] + list(BAD)
  path.write_text('\n'.join(lines) + '\n')
  with pytest.raises(yolo.LabelError) as info:
    yolo.parse_label_file(path)
  msg = str(info.value)
  assert len(info.value.errors) == len(BAD)
  for lineno, line in enumerate(lines[1:], 2):
    entry = next(e for e in info.value.errors if e.startswith(f'{path}:{lineno}: '))
    assert BAD[line] in entry and repr(line) in entry, entry
    assert entry in msg
  assert isinstance(info.value, ValueError)


def test_tree_reports_all_bad_files_at_once(tmp_path):
  root = _tree(tmp_path, items={
      'a': ['0 0.5 0.5 0.2 0.2', 'x 0.5 0.5 0.2 0.2'],
      'sub/b': ['0 0.5 0.5 0.2'],
      'c': ['0 0.5 0.5 0.2 0.2'],
      'd': ['0 0.5 0.5 0.2 0.2', '0 0.5 0.5 0.2 0.2', '0 2 0.5 0.2 0.2']})
  with pytest.raises(yolo.LabelError) as info:
    yolo.YoloTree(root, 'train', 16, 16)
  msg = str(info.value)
  labels = os.path.join(root, 'labels', 'train')
  for where in ('a.txt:2: non-numeric', os.path.join('sub', 'b.txt') + ':1: expected 5',
                'd.txt:3: cx, cy'):
    assert os.path.join(labels, where) in msg, msg
  assert msg.startswith('3 bad YOLO label line(s)')


def test_many_errors_are_capped_with_a_total(tmp_path):
  root = _tree(tmp_path, items={f'i{k:02d}': ['0 0.5 0.5 0.2'] * 3 for k in range(20)})
  with pytest.raises(yolo.LabelError, match='60 bad') as info:
    yolo.YoloTree(root, 'train', 8, 8)
  assert '... and 10 more' in str(info.value)
  assert str(info.value).count('expected 5 columns (class') == yolo.MAX_LISTED


def test_examples(tmp_path):
  root = _tree(tmp_path, items={
      'b': ['0 0.5 0.5 0.2 0.4', '0 0.25 0.25 0.1 0.1', '2 0.5 0.5 0.5 0.5'],
      'a': None,                                       # no label file: no objects
      'nested/c': [],                                  # empty file: no objects
  })
  _image(os.path.join(root, 'images', 'train', 'd.jpg'), mode='L')    # grey JPEG, no labels
  with pytest.warns(UserWarning, match='orphan'):
    _label(os.path.join(root, 'labels', 'train', 'orphan.txt'), ['0 0.5 0.5 0.1 0.1'])
    src = yolo.YoloTree(root, 'train', height=24, width=32, max_boxes=4)
  assert src.files == ('a.png', 'b.png', 'd.jpg', 'nested/c.png')
  assert len(src) == 4 and src.sequence_field == 'image' and src.class_names == ('person',)
  np.testing.assert_array_equal(src.labels(), [0, 2, 0, 0])
  assert src.labels().dtype == np.int32 and src.dropped == 1
  np.testing.assert_array_equal(src.lengths(), np.ones(4))
  for i in range(len(src)):
    ex = src[i]
    assert ex['image'].shape == (24, 32, 3) and ex['image'].dtype == np.uint8
    assert ex['boxes'].shape == (4, 4) and ex['boxes'].dtype == np.float32
    assert ex['box_valid'].shape == (4,) and ex['box_valid'].dtype == bool
    assert ex['label'].dtype == np.int32 and ex['index'].dtype == np.int32 and ex['index'] == i
    n = int(ex['label'])
    assert ex['box_valid'][:n].all() and not ex['box_valid'][n:].any()
    np.testing.assert_array_equal(ex['boxes'][n:], 0)
  ex = src[1]
  np.testing.assert_allclose(ex['boxes'][:2], [[0.4, 0.3, 0.6, 0.7], [0.2, 0.2, 0.3, 0.3]],
                             atol=1e-6)
  np.testing.assert_array_equal(ex['image'][12, 4], [200, 10, 10])     # RGB, resized
  np.testing.assert_array_equal(ex['image'][12, 28], [0, 0, 0])
  assert src.eval_transform(ex) is ex and src.train_transform(ex, np.random.default_rng(0)) is ex
  with pytest.raises(IndexError):
    src[4]
  assert not hasattr(src, 'video_ids')                 # no group_pattern: not checkable


def test_keep_classes(tmp_path):
  root = _tree(tmp_path, items={'a': ['0 0.5 0.5 0.2 0.2', '1 0.5 0.5 0.2 0.2',
                                      '3 0.5 0.5 0.2 0.2']})
  assert yolo.YoloTree(root, 'train', 8, 8).labels().tolist() == [1]
  assert yolo.YoloTree(root, 'train', 8, 8, keep_classes=(1, 3)).labels().tolist() == [2]
  assert yolo.YoloTree(root, 'train', 8, 8, keep_classes=None).labels().tolist() == [3]
  assert yolo.YoloTree(root, 'train', 8, 8, keep_classes=(5,)).labels().tolist() == [0]


def test_max_boxes(tmp_path):
  root = _tree(tmp_path, items={'crowd': ['0 0.5 0.5 0.2 0.2'] * 5, 'few': ['0 0.5 0.5 0.1 0.1']})
  with pytest.raises(ValueError, match='data.max_boxes') as info:
    yolo.YoloTree(root, 'train', 8, 8, max_boxes=4)
  assert 'crowd.txt' in str(info.value) and 'few.txt' not in str(info.value)
  assert yolo.YoloTree(root, 'train', 8, 8, max_boxes=5).labels().tolist() == [5, 1]


def test_missing_split_folder(tmp_path):
  root = _tree(tmp_path, items={'a': None})
  with pytest.raises(FileNotFoundError) as info:
    yolo.YoloTree(root, 'test', 8, 8)
  assert os.path.join(root, 'images', 'test') in str(info.value)
  with pytest.raises(FileNotFoundError) as info:
    yolo.YoloTree(root, 'validation', 8, 8)
  assert os.path.join(root, 'images', 'val') in str(info.value)
  os.makedirs(os.path.join(root, 'images', 'test'))
  _image(os.path.join(root, 'images', 'test', 'x.png'))
  with pytest.raises(FileNotFoundError, match=os.path.join('labels', 'test')):
    yolo.YoloTree(root, 'test', 8, 8)
  with pytest.raises(ValueError, match='data_dir is empty'):
    yolo.source_from_config(_config(''), 'train')


def test_pickle(tmp_path):
  root = _tree(tmp_path, items={'v1_0': ['0 0.5 0.5 0.2 0.2'], 'v1_1': None})
  for src in (yolo.YoloTree(root, 'train', 16, 16),
              yolo.YoloTree(root, 'train', 16, 16, group_pattern=r'^(.*)_\d+$')):
    copy = pickle.loads(pickle.dumps(src))
    assert type(copy) is type(src)
    a, b = src[0], copy[0]
    assert a.keys() == b.keys()
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  assert copy.video_ids() == ['v1', 'v1']


def _config(root, **kw):
  d = dict(data_dir=str(root), height=16, width=16, max_boxes=8, keep_classes=(0,),
           class_names=('person',), group_pattern='', box_augment='none', val_fraction=0.3,
           split_seed=0)
  d.update(kw)
  return ml_collections.ConfigDict({'data': d})


def test_validation_carved_by_video(tmp_path):
  items = {f'Vid{v:02d}_x264_{f}': (['0 0.5 0.5 0.2 0.2'] if (v + f) % 3 else None)
           for v in range(10) for f in range(4)}
  root = _tree(tmp_path, items=items)
  config = _config(root, group_pattern=r'^(.*)_\d+$', box_augment='geometric')
  train = yolo.source_from_config(config, 'train')
  val = yolo.source_from_config(config, 'validation')
  assert isinstance(train, yolo.GroupedYoloTree) and train.augment is not None
  assert val.augment is None and val.split == 'validation'
  tg, vg = set(train.video_ids()), set(val.video_ids())
  assert tg and vg and not tg & vg, 'a video on both sides'
  assert len(tg | vg) == 10 and len(train) + len(val) == 40
  assert len(vg) == 3                                  # round(0.3 * 10)
  assert sorted(train.files + val.files) == sorted(f'{s}.png' for s in items)
  check_sources_disjoint({'train': train, 'validation': val})
  assert [val[i]['index'] for i in range(len(val))] == list(range(len(val)))
  again = yolo.source_from_config(config, 'validation')
  assert again.files == val.files                      # deterministic
  ex = train[0]
  np.testing.assert_array_equal(train.labels()[0], ex['label'])
  out = train.train_transform(ex, np.random.default_rng(0))
  assert out['image'].shape == ex['image'].shape and train.eval_transform(ex) is ex


def test_validation_carved_by_image_and_val_folder(tmp_path):
  root = _tree(tmp_path, items={f'img{k}': ['0 0.5 0.5 0.2 0.2'] for k in range(10)})
  config = _config(root)
  train, val = (yolo.source_from_config(config, s) for s in ('train', 'validation'))
  assert len(train) == 7 and len(val) == 3 and not set(train.files) & set(val.files)
  assert not hasattr(train, 'video_ids') and train.augment is None
  legacy = _config(root)
  del legacy.data['box_augment']
  legacy.data.augment = 'geometric'                    # read when there is no box_augment key
  assert yolo.source_from_config(legacy, 'train').augment is not None
  with pytest.raises(ValueError, match='val_fraction'):
    yolo.source_from_config(_config(root, val_fraction=0.0), 'validation')
  _tree(tmp_path, split='val', items={'held': ['0 0.5 0.5 0.2 0.2', '0 0.2 0.2 0.1 0.1']})
  train, val = (yolo.source_from_config(config, s) for s in ('train', 'validation'))
  assert len(train) == 10 and val.files == ('held.png',) and val.labels().tolist() == [2]


def test_group_pattern_must_match(tmp_path):
  root = _tree(tmp_path, items={'v1_0': None, 'stray': None})
  with pytest.raises(ValueError, match='stray.png'):
    yolo.YoloTree(root, 'train', 8, 8, group_pattern=r'^(.*)_\d+$')
