"""Published feature sets (vad_jax.data.published): RTFM / UR-DMU / VadCLIP / C3D lists in their
published layouts, MIL segment rules against loops, ground truth like `gt-ucf.npy`, and the
source's transforms. Every bad input must name the list file and line."""

import os
import pickle

import numpy as np
import pytest

from vad_jax.classes import CLASS_NAMES
from vad_jax.data.annotations import Annotation, parse_ucf_temporal
from vad_jax.data.published import (Entry, PublishedFeatures, build_gt, infer_label, read_list,
                                    rtfm_segments, split_gt, subset, sultani_segments)
from vad_jax.data.source import Source

F = 8
RNG = np.random.default_rng(0)


def _save(path, array):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  np.save(path, array)
  return str(path)


def _list(path, lines):
  path.write_text('\n'.join(lines) + '\n', encoding='utf-8')
  return str(path)


@pytest.fixture
def rtfm(tmp_path):
  """RTFM layout: <Class>/<Video>_x264_i3d.npy of [T, 10, F], abnormal videos first."""
  videos = [('Abuse', 'Abuse028_x264', 5), ('Arson', 'Arson011_x264', 3),
            ('Testing_Normal_Videos_Anomaly', 'Normal_Videos_003_x264', 4)]
  lines = []
  for folder, name, t in videos:
    _save(tmp_path / 'i3d' / folder / f'{name}_i3d.npy',
          RNG.normal(size=(t, 10, F)).astype(np.float32))
    lines.append(f'i3d/{folder}/{name}_i3d.npy')
  return _list(tmp_path / 'ucf-i3d-test.list', lines), tmp_path


@pytest.fixture
def urdmu(tmp_path):
  """UR-DMU layout: one list line a crop file <Video>__<k>.npy of [T, F]."""
  lines = []
  for name, t in [('Abuse028_x264', 4), ('Normal_Videos_003_x264', 2)]:
    for k in range(10):
      p = _save(tmp_path / 'feats' / f'{name}__{k}.npy',
                np.full((t, F), 10 * k, np.float32) + np.arange(t)[:, None])
      lines.append(p)
  return _list(tmp_path / 'ucf-crops.list', lines), tmp_path


def _err(exc, fn, *where):
  with pytest.raises(exc) as e:
    fn()
  for w in where:
    assert w in str(e.value), (w, str(e.value))
  return str(e.value)


# ----------------------------------------------------------------------------- lists
def test_rtfm_list(rtfm):
  path, root = rtfm
  entries = read_list(path)
  assert [e.key for e in entries] == ['Abuse028_x264', 'Arson011_x264', 'Normal_Videos_003_x264']
  assert entries[0].paths == (os.path.join(str(root), 'i3d/Abuse/Abuse028_x264_i3d.npy'),)
  assert entries[0].label is None and entries[2].where == f'{path}:3'
  src = PublishedFeatures(entries, CLASS_NAMES)
  assert isinstance(src, Source) and len(src) == 3
  np.testing.assert_array_equal(src.labels(), [1, 3, 0])
  assert src.labels().dtype == np.int32 and src.lengths().dtype == np.int64
  np.testing.assert_array_equal(src.lengths(), [5, 3, 4])
  assert (src.num_crops, src.feature_dim, src.sequence_field) == (10, F, 'features')
  ex = src[1]
  np.testing.assert_array_equal(ex['features'],
                                np.load(str(root / 'i3d/Arson/Arson011_x264_i3d.npy')))
  assert ex['features'].dtype == np.float32 and ex['label'] == 3 and ex['index'] == 1
  assert ex['label'].dtype == np.int32 and ex['index'].dtype == np.int32


def test_urdmu_crop_list_groups_by_video_in_crop_order(urdmu):
  path, _ = urdmu
  entries = read_list(path)
  assert read_list(path, fmt='crops') == entries
  assert [e.key for e in entries] == ['Abuse028_x264', 'Normal_Videos_003_x264']
  assert [os.path.basename(p) for p in entries[0].paths] == [f'Abuse028_x264__{k}.npy'
                                                             for k in range(10)]
  assert entries[1].where == f'{path}:11'
  src = PublishedFeatures(entries, CLASS_NAMES)
  x = src[0]['features']
  assert x.shape == (4, 10, F)
  np.testing.assert_array_equal(x[:, :, 0], 10 * np.arange(10)[None] + np.arange(4)[:, None])


def test_urdmu_lines_out_of_crop_order_are_sorted(tmp_path, urdmu):
  path, _ = urdmu
  lines = open(path).read().split()
  shuffled = _list(tmp_path / 'shuffled.list', lines[9::-1] + lines[10:])
  assert read_list(shuffled)[0].paths == read_list(path)[0].paths


def test_vadclip_csv_with_header_and_class_labels(tmp_path):
  # VadCLIP test list: crop __5 only, foreign absolute paths, found under root by basename.
  rows = ['path,label']
  for cls, name, t in [('Abuse', 'Abuse028_x264', 3), ('Normal', 'Normal_Videos_003_x264', 2)]:
    _save(tmp_path / 'clip' / cls / f'{name}__5.npy', np.ones((t, 512), np.float32))
    rows.append(f'/home/someone/UCFClipFeatures/{cls}/{name}__5.npy,{cls}')
  path = _list(tmp_path / 'ucf_CLIP_rgbtest.csv', rows)
  _err(FileNotFoundError, lambda: read_list(path), f'{path}:2', 'Abuse028_x264__5.npy')
  entries = read_list(path, root=str(tmp_path / 'clip'))
  assert [(e.key, e.label, len(e.paths)) for e in entries] == [
      ('Abuse028_x264', 'Abuse', 1), ('Normal_Videos_003_x264', 'Normal', 1)]
  src = PublishedFeatures(entries, CLASS_NAMES, feature_dim=512)
  np.testing.assert_array_equal(src.labels(), [1, 0])
  assert src[0]['features'].shape == (3, 1, 512)


def test_csv_without_crops_and_xd_labels(tmp_path):
  names = ['v=S-7rRLrxnVQ__#1_label_B4-0-0', 'A.Beautiful.Mind.2001__#00-25-20_00-26-04_label_A']
  for n in names:
    _save(tmp_path / f'{n}.npy', np.ones((2, F), np.float64))
  path = _list(tmp_path / 'xd.csv', [f'{names[0]}.npy,B4-0-0', f'{names[1]}.npy,A'])
  src = PublishedFeatures(read_list(path), ('normal', 'violent'))
  np.testing.assert_array_equal(src.labels(), [1, 0])
  assert src[0]['features'].dtype == np.float32


def test_c3d_rank2_4096(tmp_path):
  p = _save(tmp_path / 'c3d' / 'Burglary005_x264.npy', RNG.normal(size=(3, 4096)))
  path = _list(tmp_path / 'c3d.list', [p])
  src = PublishedFeatures(read_list(path), CLASS_NAMES, bins='sultani', train_crop='mean')
  ex = src[0]
  assert ex['features'].shape == (3, 1, 4096) and ex['label'] == CLASS_NAMES.index('Burglary')
  out = src.train_transform(ex, np.random.default_rng(0))
  np.testing.assert_allclose(out['features'], sultani_segments(np.load(p)), rtol=1e-6)
  assert out['features'].shape == (32, 4096)


def test_non_ascii_paths_work(tmp_path):
  p = _save(tmp_path / 'Überwachung' / '視頻' / 'Fighting003_x264_i3d.npy',
            np.ones((2, 10, F), np.float32))
  path = _list(tmp_path / 'Überwachung' / 'liste-ü.list', ['視頻/Fighting003_x264_i3d.npy'])
  entries = read_list(path)
  assert entries[0].paths == (p,)
  src = PublishedFeatures(entries, CLASS_NAMES)
  assert src[0]['features'].shape == (2, 10, F) and src.labels()[0] == 7


def test_list_written_for_another_machine_resolves_under_root(rtfm):
  path, root = rtfm
  foreign = [f'/data/yu/i3d_features_test/{os.path.basename(e.paths[0])}'
             for e in read_list(path)]
  moved = _list(root / 'moved.list', foreign)
  assert [e.paths for e in read_list(moved, root=str(root / 'i3d'))] == \
      [e.paths for e in read_list(path)]


# ----------------------------------------------------------------------------- bad lists
def test_missing_file_named_with_list_line(rtfm):
  path, root = rtfm
  bad = _list(root / 'bad.list', ['i3d/Abuse/Abuse028_x264_i3d.npy', 'i3d/Abuse/Gone_i3d.npy'])
  _err(FileNotFoundError, lambda: read_list(bad), f'{bad}:2', 'Gone_i3d.npy')
  _err(FileNotFoundError, lambda: read_list(str(root / 'none.list')), 'none.list')


def test_duplicate_video_names_both_lines(rtfm):
  path, root = rtfm
  lines = open(path).read().split()
  dup = _list(root / 'dup.list', lines + [lines[0]])
  _err(ValueError, lambda: read_list(dup), f'{dup}:4', f'{dup}:1', 'Abuse028_x264', 'twice')


def test_duplicate_crop_names_both_lines(urdmu):
  path, root = urdmu
  lines = open(path).read().split()
  dup = _list(root / 'dup.list', lines + [lines[3]])
  _err(ValueError, lambda: read_list(dup), f'{dup}:21', f'{dup}:4', 'twice')


def test_incomplete_crop_sets_name_the_video(urdmu, tmp_path):
  path, _ = urdmu
  lines = open(path).read().split()
  nine = _list(tmp_path / 'nine.list', lines[:19])   # Normal_Videos_003 lacks crop 9
  msg = _err(ValueError, lambda: read_list(nine), f'{nine}:11', 'Normal_Videos_003_x264',
             'missing [9]')
  assert 'incomplete' in msg
  gap = _list(tmp_path / 'gap.list', [l for l in lines if '__3.npy' not in l])   # no k = 3 at all
  _err(ValueError, lambda: read_list(gap), f'{gap}:1', 'Abuse028_x264', '0..C-1')
  plain = _list(tmp_path / 'plain.list', lines + [lines[0].replace('__0.npy', '_i3d.npy')])
  _save(tmp_path / 'feats' / 'Abuse028_x264_i3d.npy', np.ones((4, F), np.float32))
  _err(ValueError, lambda: read_list(plain), f'{plain}:21', 'crop suffix')


@pytest.mark.parametrize('array,words', [
    (np.ones((1, 3, F), np.float32), None),   # valid [T, C, F], but 3 crops against 10
    (np.ones((3, 10, F, 1), np.float32), ['shape (3, 10, 8, 1)', 'expected']),
    (np.ones((3, 10, F + 1), np.float32), ['9 features', ':1']),
    (np.ones((0, 10, F), np.float32), ['shape (0, 10, 8)', 'T = 0']),
    (np.ones((3, 10, F), np.int64), ['dtype int64', 'float']),
    (np.ones((3, 5, F), np.float32), ['5 crops', ':1']),
])
def test_bad_feature_files_name_list_line_file_and_shape(rtfm, array, words):
  path, root = rtfm
  p = _save(root / 'i3d' / 'Abuse' / 'Abuse030_x264_i3d.npy', array)
  bad = _list(root / 'bad.list', open(path).read().split() + ['i3d/Abuse/Abuse030_x264_i3d.npy'])
  entries = read_list(bad)
  if array.shape == (1, 3, F):   # a valid [T, C, F] file with C = 3: the crop count differs
    words = ['3 crops', f'{bad}:1']
  _err(ValueError, lambda: PublishedFeatures(entries, CLASS_NAMES), f'{bad}:4', p, *words)


def test_feature_dim_and_crop_file_lengths(urdmu, tmp_path):
  path, root = urdmu
  entries = read_list(path)
  _err(ValueError, lambda: PublishedFeatures(entries, CLASS_NAMES, feature_dim=1024), f'{path}:1',
       'feature_dim=1024', '8 features')
  _save(root / 'feats' / 'Normal_Videos_003_x264__7.npy', np.ones((3, F), np.float32))
  _err(ValueError, lambda: PublishedFeatures(read_list(path), CLASS_NAMES), f'{path}:11',
       'Normal_Videos_003_x264__7.npy', 'differ in shape', '(3, 8)')
  _save(root / 'feats' / 'Normal_Videos_003_x264__7.npy', np.ones((2, F + 1), np.float32))
  _err(ValueError, lambda: PublishedFeatures(read_list(path), CLASS_NAMES), f'{path}:11',
       'differ in shape', '(2, 9)')
  _save(root / 'feats' / 'Normal_Videos_003_x264__7.npy', np.ones((2, 1, F), np.float32))
  _err(ValueError, lambda: PublishedFeatures(read_list(path), CLASS_NAMES), f'{path}:11',
       '(2, 1, 8)', 'one crop a file')


def test_bad_csv_rows(tmp_path):
  _save(tmp_path / 'Abuse028_x264.npy', np.ones((2, F), np.float32))
  path = _list(tmp_path / 'l.csv', ['path,label', 'Abuse028_x264.npy,Abuse,extra'])
  _err(ValueError, lambda: read_list(path), f'{path}:2', '3')
  path = _list(tmp_path / 'l.csv', ['path,label', 'Abuse028_x264.npy,Kidnapping'])
  _err(ValueError, lambda: PublishedFeatures(read_list(path), CLASS_NAMES), f'{path}:2',
       'Kidnapping', 'Vandalism')


# ----------------------------------------------------------------------------- labels
@pytest.mark.parametrize('key,want', [
    ('Abuse028_x264', 'Abuse'), ('RoadAccidents133_x264', 'RoadAccidents'),
    ('roadaccidents001_x264', 'RoadAccidents'), ('Normal_Videos_003_x264', 'Normal'),
    ('Normal_Videos003_x264', 'Normal'), ('Shoplifting001_x264', 'Shoplifting'),
    ('Shooting002_x264', 'Shooting'), ('Arrest001_x264', 'Arrest'), ('Arson007_x264', 'Arson'),
])
def test_infer_label_ucf(key, want):
  assert infer_label(key, CLASS_NAMES) == want


def test_infer_label_xd_and_unknown():
  two = ('NonViolent', 'Violent')
  assert infer_label('A.Beautiful.Mind.2001__#00-25-20_00-26-04_label_A', two) == 'NonViolent'
  assert infer_label('Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6', two) == 'Violent'
  assert infer_label('v=S-7rRLrxnVQ__#1_label_B4-0-0', two) == 'Violent'
  for key, names in [('video_0001', CLASS_NAMES), ('AbuseX_x264', CLASS_NAMES),
                     ('v=x__#1_label_B4-0-0', CLASS_NAMES)]:
    with pytest.raises(ValueError) as e:
      infer_label(key, names)
    assert key in str(e.value) and 'CSV' in str(e.value)


def test_uninferable_label_names_list_line(tmp_path):
  _save(tmp_path / 'clip_0001.npy', np.ones((2, F), np.float32))
  path = _list(tmp_path / 'x.list', ['clip_0001.npy'])
  _err(ValueError, lambda: PublishedFeatures(read_list(path), CLASS_NAMES), f'{path}:1',
       'clip_0001', 'CSV')


# ----------------------------------------------------------------------------- segments
def _rtfm_loop(x, s):
  t = len(x)
  out = []
  for i in range(s):
    a, b = int(i * t / s), int((i + 1) * t / s)   # int(linspace(0, t, s + 1)) without linspace
    out.append(x[min(a, t - 1)] if a == b else sum(x[j] for j in range(a, b)) / (b - a))
  return np.array(out)


def _sultani_loop(x, s):
  t = len(x)
  edges = []
  for i in range(s + 1):
    v = 1 + i * (t - 1) / s
    edges.append(int(v + 0.5))   # MATLAB round of a positive number
  out = []
  for i in range(s):
    ss, ee = edges[i], edges[i + 1] - 1
    rows = [x[j - 1] for j in range(ss, ee + 1)]
    out.append(x[ss - 1] if ee < ss else sum(rows) / len(rows))
  return np.array(out)


@pytest.mark.parametrize('t', [1, 2, 5, 31, 32, 33, 70, 100, 200])
@pytest.mark.parametrize('s', [32, 4])
def test_segment_rules_match_loops(t, s):
  x = RNG.normal(size=(t, 3)).astype(np.float32)
  for fn, loop in [(rtfm_segments, _rtfm_loop), (sultani_segments, _sultani_loop)]:
    got = fn(x, s)
    assert got.shape == (s, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, loop(x.astype(np.float64), s), rtol=1e-5, atol=1e-6)


def test_segment_rules_by_hand():
  x = np.arange(5, dtype=np.float32)[:, None]
  # rtfm, S=4: edges int(0, 1.25, 2.5, 3.75, 5) = 0 1 2 3 5
  np.testing.assert_array_equal(rtfm_segments(x, 4)[:, 0], [0, 1, 2, 3.5])
  # sultani, S=4: edges round(1, 2, 3, 4, 5); rows 1..1, 2..2, 3..3, 4..4 (row 5 in none)
  np.testing.assert_array_equal(sultani_segments(x, 4)[:, 0], [0, 1, 2, 3])
  # T < S: empty bins copy a snippet
  np.testing.assert_array_equal(rtfm_segments(x[:2], 4)[:, 0], [0, 0, 1, 1])
  np.testing.assert_array_equal(sultani_segments(x[:1], 4)[:, 0], [0, 0, 0, 0])


# ----------------------------------------------------------------------------- ground truth
def _two_videos(tmp_path):
  _save(tmp_path / 'Normal_Videos_003_x264_i3d.npy', np.ones((1, 10, F), np.float32))
  _save(tmp_path / 'Arson011_x264_i3d.npy', np.ones((2, 10, F), np.float32))
  # list order differs from the annotation file's: the gt follows the list
  path = _list(tmp_path / 'test.list', ['Normal_Videos_003_x264_i3d.npy',
                                        'Arson011_x264_i3d.npy'])
  ann = _list(tmp_path / 'ann.txt', ['Arson011_x264.mp4  Arson  3  5  20  21',
                                     'Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1'])
  return read_list(path), parse_ucf_temporal(ann), ann


def test_build_gt_by_hand(tmp_path):
  entries, ann, _ = _two_videos(tmp_path)
  gt, offsets = build_gt(entries, [1, 2], ann)
  want = ([0] * 16 +                                           # Normal_Videos_003: T=1, 16 frames
          [0, 0, 1, 1, 1] + [0] * 14 + [1, 1] + [0] * 11)      # Arson011: T=2, frames 3-5, 20-21
  np.testing.assert_array_equal(gt, want)
  assert gt.dtype == np.uint8 and len(gt) == 48
  np.testing.assert_array_equal(offsets, [0, 16, 48])
  assert offsets.dtype == np.int64
  masks = split_gt(gt, [1, 2])
  np.testing.assert_array_equal(masks[1], want[16:])
  gt0, _ = build_gt(entries, [1, 2], ann, base=0)   # RTFM's builder: 0-based inclusive
  np.testing.assert_array_equal(gt0[16:], [0, 0, 0, 1, 1, 1] + [0] * 14 + [1, 1] + [0] * 10)


def test_build_gt_missing_annotation_and_clipping(tmp_path):
  entries, ann, ann_path = _two_videos(tmp_path)
  _err(ValueError, lambda: build_gt(entries, [1, 2], {}), f'{tmp_path}/test.list:2',
       'Arson011_x264', 'no annotation')
  assert build_gt(entries[:1], [1], {})[0].sum() == 0   # normal without a line: all 0
  cut = {'Arson011_x264': Annotation('Arson011_x264', 'Arson', ((3, 5), (15, 21)),
                                     f'{ann_path}:1')}
  warnings = []
  gt, _ = build_gt(entries, [1, 1], cut, warnings=warnings)   # Arson011 cut to 16 frames
  assert len(warnings) == 1 and f'{ann_path}:1' in warnings[0] and '(15, 21)' in warnings[0]
  assert gt[16:].tolist() == [0, 0, 1, 1, 1] + [0] * 9 + [1, 1]
  _err(ValueError, lambda: build_gt(entries, [1, 1], ann), f'{ann_path}:1', '(20, 21)',
       '16 frames')


def test_split_gt_length_mismatch_says_both_numbers():
  msg = _err(ValueError, lambda: split_gt(np.zeros(40, np.uint8), [1, 2]), '40', '48',
             'ceil(n / 16)')
  assert 'UR-DMU' in msg


# ----------------------------------------------------------------------------- the source
def test_transforms(rtfm):
  path, _ = rtfm
  entries = read_list(path)
  masks = [np.ones(t * 16, np.uint8) for t in (5, 3, 4)]
  src = PublishedFeatures(entries, CLASS_NAMES, masks=masks, segments=6)
  ex = src[0]
  assert ex['mask'].shape == (80,) and ex['mask'].dtype == np.uint8
  assert src.eval_transform(ex) is ex
  out = src.train_transform(ex, np.random.default_rng(7))
  c = np.random.default_rng(7).integers(10)
  assert 'mask' not in out and out['features'].shape == (6, F)
  assert out['features'].dtype == np.float32
  np.testing.assert_allclose(out['features'], rtfm_segments(ex['features'][:, c], 6), rtol=1e-6)
  again = src.train_transform(src[0], np.random.default_rng(7))
  np.testing.assert_array_equal(again['features'], out['features'])
  draws = {int(np.argmin([np.abs(src.train_transform(ex, np.random.default_rng(s))['features']
                                 - rtfm_segments(ex['features'][:, k], 6)).max()
                          for k in range(10)])) for s in range(40)}
  assert len(draws) > 3   # different rngs choose different crops
  mean = PublishedFeatures(entries, CLASS_NAMES, train_crop='mean', bins='sultani', segments=4)
  np.testing.assert_allclose(mean.train_transform(ex, None)['features'],
                             sultani_segments(ex['features'].mean(1), 4), rtol=1e-6)


def test_masks_are_checked(rtfm):
  path, _ = rtfm
  entries = read_list(path)
  _err(ValueError, lambda: PublishedFeatures(entries, CLASS_NAMES, masks=[np.ones(81)] * 3),
       f'{path}:1', 'Abuse028_x264', '80')
  _err(ValueError, lambda: PublishedFeatures(entries, CLASS_NAMES, masks=[np.ones(1)]), '1 masks')


def test_picklable_and_select(rtfm):
  path, _ = rtfm
  entries = read_list(path)
  src = PublishedFeatures(entries, CLASS_NAMES, masks=[np.zeros(t * 16) for t in (5, 3, 4)])
  back = pickle.loads(pickle.dumps(src))
  np.testing.assert_array_equal(back[2]['features'], src[2]['features'])
  part = src.select([2, 0])
  assert part.keys == ['Normal_Videos_003_x264', 'Abuse028_x264']
  np.testing.assert_array_equal(part.labels(), [0, 1])
  np.testing.assert_array_equal(part.lengths(), [4, 5])
  np.testing.assert_array_equal(part[1]['features'], src[0]['features'])
  assert part[1]['index'] == 1 and len(part[0]['mask']) == 64
  assert subset(entries, [2, 0]) == [entries[2], entries[0]]
  assert isinstance(entries[0], Entry)


def test_config_defaults_zero_feature_dim_and_empty_root_mean_unset(rtfm):
  path, _ = rtfm
  entries = read_list(path, root='')
  assert [e.paths for e in entries] == [e.paths for e in read_list(path)]
  assert PublishedFeatures(entries, CLASS_NAMES, feature_dim=0).feature_dim == F
