"""Feature-sequence data for seed 003: list files (vad_jax.data.features), the motion descriptor,
and the built-in feature set's on-disk cache with its extractors (vad_jax.extract.synthetic)."""

import json
import os
import pickle
import re
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vad_jax.classes import CLASS_NAMES
from vad_jax.data import descriptors
from vad_jax.data.features import FeatureSequences, clip_indices
from vad_jax.data.source import Source
from vad_jax.data.synthetic import SyntheticSpec, SyntheticVideos, class_probabilities
from vad_jax.extract import synthetic as ext

NAMES = ('NonViolent', 'Violent')


# ----------------------------------------------------------------------------- clip sampling
def _segments(t, l):
  edges = [k * t // l for k in range(l + 1)]
  return [(a, max(b, a + 1)) for a, b in zip(edges[:-1], edges[1:])]


@pytest.mark.parametrize('t,l', [(64, 20), (100, 7), (21, 20), (20, 20)])
def test_clip_indices_eval_centres_and_train_jitter_inside_segments(t, l):
  segs = _segments(t, l)
  np.testing.assert_array_equal(clip_indices(t, l), [a + (b - a) // 2 for a, b in segs])
  rng = np.random.default_rng(0)
  draws = np.stack([clip_indices(t, l, rng) for _ in range(400)])
  assert draws.dtype == np.int64 and draws.shape == (400, l)
  for k, (a, b) in enumerate(segs):
    assert set(np.unique(draws[:, k])) == set(range(a, b))   # inside, and all of it reached
  if t == l:
    np.testing.assert_array_equal(clip_indices(t, l), np.arange(t))


def test_clip_indices_repeat_when_shorter_than_a_clip():
  for t in (1, 3, 7):
    want = np.floor(np.linspace(0, t, 20, endpoint=False)).astype(np.int64)
    np.testing.assert_array_equal(clip_indices(t, 20), want)
    np.testing.assert_array_equal(clip_indices(t, 20, np.random.default_rng(1)), want)
  with pytest.raises(ValueError):
    clip_indices(0, 20)


# ----------------------------------------------------------------------------- list files
def _write(path, array):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  np.save(path, array)


@pytest.fixture
def tree(tmp_path):
  rng = np.random.default_rng(0)
  a = rng.normal(size=(10, 6)).astype(np.float32)
  b = rng.normal(size=(7, 3, 6))                                 # [T, crops, F], float64
  c = rng.normal(size=(3, 6)).astype(np.float16)
  _write(str(tmp_path / 'lists' / 'a.npy'), a)
  _write(str(tmp_path / 'lists' / 'sub' / 'b.npy'), b)
  _write(str(tmp_path / 'elsewhere' / 'c.npy'), c)
  lst = tmp_path / 'lists' / 'train.csv'
  lst.write_text(f'path,label\n# a comment\n\na.npy,Violent\nsub/b.npy, 0\n'
                 f'{tmp_path / "elsewhere" / "c.npy"},1\n')
  return str(lst), (a, b, c)


def test_feature_sequences_reads_a_list(tree):
  path, (a, b, c) = tree
  src = FeatureSequences(path, NAMES, clip_len=4)
  assert isinstance(src, Source) and src.sequence_field == 'features'
  assert len(src) == 3 and src.feature_dim == 6 and src.class_names == NAMES
  np.testing.assert_array_equal(src.labels(), [1, 0, 1])
  np.testing.assert_array_equal(src.lengths(), [10, 7, 3])
  assert src.labels().dtype == np.int32 and src.lengths().dtype == np.int64
  ex = src[1]
  assert ex['features'].dtype == np.float32 and ex['label'].dtype == np.int32
  assert ex['index'] == 1 and ex['index'].dtype == np.int32
  np.testing.assert_allclose(ex['features'], b.mean(1), rtol=1e-6)
  np.testing.assert_allclose(FeatureSequences(path, NAMES, 4, crops='first')[1]['features'], b[:, 0],
                             rtol=1e-6)
  np.testing.assert_array_equal(src[0]['features'], a)
  np.testing.assert_array_equal(src[2]['features'], c.astype(np.float32))
  ev = src.eval_transform(src[0])
  np.testing.assert_array_equal(ev['features'], a[clip_indices(10, 4)])
  assert ev['label'] == 1 and ev['index'] == 0
  tr = src.train_transform(src[2], np.random.default_rng(0))    # T = 3 < clip_len: repeats
  assert tr['features'].shape == (4, 6)
  np.testing.assert_array_equal(tr['features'], c.astype(np.float32)[clip_indices(3, 4)])
  clone = pickle.loads(pickle.dumps(src))
  np.testing.assert_array_equal(clone[1]['features'], ex['features'])
  with pytest.raises(IndexError):
    src[3]


BAD = {  # name: (list line 2 after the header, files to write {name: array}, match)
    'missing npy': ('nope.npy,0', {}, 'nope.npy'),
    'bad label': ('x.npy,Violet', {'x.npy': np.zeros((4, 5))}, "'Violet'"),
    'label id out of range': ('x.npy,2', {'x.npy': np.zeros((4, 5))}, "'2'"),
    'three columns': ('x.npy,0,extra', {'x.npy': np.zeros((4, 5))}, '3.*x.npy,0,extra'),
    'one column': ('x.npy', {'x.npy': np.zeros((4, 5))}, '1.*x.npy'),
    '1-D array': ('x.npy,0', {'x.npy': np.zeros(4)}, r'x.npy.*\(4,\)'),
    '4-D array': ('x.npy,0', {'x.npy': np.zeros((4, 2, 2, 5))}, r'x.npy.*\(4, 2, 2, 5\)'),
    'no vectors': ('x.npy,0', {'x.npy': np.zeros((0, 5))}, r'x.npy.*\(0, 5\)'),
    'no crops': ('x.npy,0', {'x.npy': np.zeros((4, 0, 5))}, r'x.npy.*\(4, 0, 5\)'),
    'integer features': ('x.npy,0', {'x.npy': np.zeros((4, 5), np.int64)}, 'x.npy.*int64'),
    'feature size differs': ('x.npy,0', {'x.npy': np.zeros((4, 7))}, 'x.npy.*7.*:2'),
    'not an npy file': ('x.npy,0', {'x.npy': None}, 'x.npy'),
}


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_lists_name_the_file_and_line(tmp_path, case):
  line, files, match = BAD[case]
  np.save(tmp_path / 'ok.npy', np.zeros((4, 5), np.float32))
  for name, arr in files.items():
    if arr is None:
      (tmp_path / name).write_text('not numpy')
    else:
      np.save(tmp_path / name, arr)
  lst = tmp_path / 'l.csv'
  lst.write_text(f'path,label\nok.npy,1\n{line}\n')
  with pytest.raises((ValueError, FileNotFoundError), match=f'^{re.escape(str(lst))}:3: .*{match}') as e:
    FeatureSequences(str(lst), NAMES, 4)
  assert '\n' not in str(e.value)
  if case == 'missing npy':
    assert e.type is FileNotFoundError


def test_missing_or_empty_list_file(tmp_path):
  with pytest.raises(FileNotFoundError, match='nowhere.csv'):
    FeatureSequences(str(tmp_path / 'nowhere.csv'), NAMES, 4)
  (tmp_path / 'empty.csv').write_text('path,label\n# nothing\n')
  with pytest.raises(ValueError, match='empty.csv: lists no videos'):
    FeatureSequences(str(tmp_path / 'empty.csv'), NAMES, 4)


# ----------------------------------------------------------------------------- descriptor
def test_motion_descriptor_definition():
  video = SyntheticVideos(SyntheticSpec(height=32, width=32, num_frames=12, num_videos=1), 'test')[0]['frames']
  d = descriptors.motion_descriptor(video)
  assert d.shape == (12, descriptors.FEATURE_DIM) == (12, len(descriptors.NAMES)) and d.dtype == np.float32
  x = video.astype(np.float64)

  def floored(m):
    floor = np.sort(m.reshape(len(m), -1), axis=1)[:, m[0].size // 2]
    return np.maximum(m - floor[:, None, None], 0), floor
  fg, fg_floor = floored(np.abs(x - np.median(x, axis=0)).mean(-1) / 255)
  motion = np.zeros_like(fg)
  motion[1:] = np.abs(np.diff(x, axis=0)).mean(-1) / 255
  motion, m_floor = floored(motion)
  cells = lambda m: m.reshape(12, 8, 4, 8, 4).mean((2, 4)).reshape(12, 64)
  np.testing.assert_allclose(d[:, :64], cells(fg), atol=1e-6)
  np.testing.assert_allclose(d[:, 64:128], cells(motion), atol=1e-6)
  np.testing.assert_allclose(d[:, 128:136], -np.sort(-cells(motion))[:, :8], atol=1e-6)
  np.testing.assert_allclose(d[:, 136], fg.mean((1, 2)), atol=1e-6)
  cx = (fg.sum(1) @ ((np.arange(32) + 0.5) / 32)) / fg.sum((1, 2))
  np.testing.assert_allclose(d[:, 137], cx, atol=1e-5)
  np.testing.assert_allclose(d[:, 146:], np.stack([fg_floor, m_floor], 1), atol=1e-6)
  assert np.all(d[0, 64:136] == 0)                                  # no motion before frame 1
  with pytest.raises(ValueError, match='uint8'):
    descriptors.motion_descriptor(video.astype(np.float32))


# ----------------------------------------------------------------------------- class_probs
def test_class_probs():
  default = SyntheticSpec(height=32, width=32, num_frames=8, num_videos=300)
  k = np.arange(13)
  want = np.concatenate([[0.4], 0.6 * np.ones(13) / 13])          # unchanged without class_probs
  np.testing.assert_allclose(class_probabilities(default), want)
  w = 4.0 ** (-k / 12)
  np.testing.assert_allclose(class_probabilities(SyntheticSpec(class_imbalance=4.0))[1:],
                             0.6 * w / w.sum())
  only = np.zeros(14)
  only[CLASS_NAMES.index('Fighting')] = 3.0
  spec = SyntheticSpec(height=32, width=32, num_frames=8, num_videos=50, class_probs=tuple(only))
  np.testing.assert_array_equal(class_probabilities(spec), only / 3)
  assert set(SyntheticVideos(spec, 'train').labels()) == {CLASS_NAMES.index('Fighting')}
  same = SyntheticSpec(height=32, width=32, num_frames=8, num_videos=300, class_probs=tuple(want))
  np.testing.assert_array_equal(SyntheticVideos(same, 'train').labels(),
                                SyntheticVideos(default, 'train').labels())
  with pytest.raises(ValueError, match='14 probabilities'):
    class_probabilities(SyntheticSpec(class_probs=(1.0, 2.0)))
  with pytest.raises(ValueError, match='non-negative'):
    class_probabilities(SyntheticSpec(class_probs=tuple([-1.0] + [1.0] * 13)))


def test_violence_class_probs():
  p = np.array(ext.violence_class_probs(('Abuse', 'Assault', 'Fighting'), 0.3))
  v = np.isin(np.array(CLASS_NAMES), ['Abuse', 'Assault', 'Fighting'])
  assert abs(p.sum() - 1) < 1e-12 and abs(p[v].sum() - 0.3) < 1e-12
  base = class_probabilities(SyntheticSpec())
  np.testing.assert_allclose(p[~v] / p[~v].sum(), base[~v] / base[~v].sum())
  with pytest.raises(ValueError, match='Normal'):
    ext.violence_class_probs(('Normal',), 0.5)
  with pytest.raises(ValueError, match='violent_fraction'):
    ext.violence_class_probs(('Abuse',), 1.5)


# ----------------------------------------------------------------------------- the cache
def tiny_cfg(**kw):
  d = dict(height=32, width=32, num_frames=16, num_train=8, num_validation=4, num_test=4,
           window=(4, 8), min_event_px=1.5, violent_classes=('Abuse', 'Assault', 'Fighting'),
           violent_fraction=0.5)
  d.update(kw)
  return ml_collections.ConfigDict(d)


def _entries(root):
  return sorted(os.listdir(root)) if os.path.isdir(root) else []


def test_synthetic_cache_builds_once_and_is_reused(tmp_path, monkeypatch):
  root = str(tmp_path / 'cache')
  lists = ext.synthetic_feature_lists(tiny_cfg(), 3, cache_dir=root)
  key = os.path.dirname(lists['train'])
  assert _entries(root) == [os.path.basename(key)]                  # nothing else left behind
  assert sorted(os.listdir(key)) == ['meta.json', 'source_labels.npz', 'test', 'test.csv', 'train',
                                     'train.csv', 'validation', 'validation.csv']
  assert open(lists['train']).readline() == 'path,label\n'
  assert open(lists['train']).readlines()[1].startswith('train/00000.npy,')
  specs = ext.split_specs(tiny_cfg(), 3)
  source = np.load(os.path.join(key, 'source_labels.npz'))
  v = np.isin(np.array(CLASS_NAMES), ['Abuse', 'Assault', 'Fighting'])
  for split, n in (('train', 8), ('validation', 4), ('test', 4)):
    src = FeatureSequences(lists[split], ext.VIOLENCE_CLASSES, clip_len=5)
    videos = SyntheticVideos(specs[split], split)
    assert len(src) == n and src.feature_dim == descriptors.FEATURE_DIM
    np.testing.assert_array_equal(src.lengths(), 16)
    np.testing.assert_array_equal(source[split], videos.labels())
    np.testing.assert_array_equal(src.labels(), v[videos.labels()])
  np.testing.assert_array_equal(src[1]['features'], descriptors.motion_descriptor(videos[1]['frames']))
  meta = json.load(open(os.path.join(key, 'meta.json')))
  assert meta['feature_dim'] == descriptors.FEATURE_DIM and meta['specs']['train']['seed'] == 3

  mtime = os.path.getmtime(os.path.join(key, 'train', '00000.npy'))
  monkeypatch.setattr(ext.DescriptorExtractor, '__call__',
                      lambda *a: pytest.fail('re-extracted a cached feature set'))
  assert ext.synthetic_feature_lists(tiny_cfg(), 3, cache_dir=root) == lists
  assert os.path.getmtime(os.path.join(key, 'train', '00000.npy')) == mtime
  monkeypatch.undo()
  other = ext.synthetic_feature_lists(tiny_cfg(num_frames=12), 3, cache_dir=root)
  assert os.path.dirname(other['train']) != key and len(_entries(root)) == 2


def test_synthetic_cache_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
  root = str(tmp_path / 'cache')
  calls = []

  def interrupted(self, videos):
    calls.append(1)
    if len(calls) == 5:
      raise KeyboardInterrupt
    return np.zeros((len(videos), videos.shape[1], 3), np.float32)
  monkeypatch.setattr(ext.DescriptorExtractor, '__call__', interrupted)
  with pytest.raises(KeyboardInterrupt):
    ext.synthetic_feature_lists(tiny_cfg(), 0, cache_dir=root)
  assert _entries(root) == []


def test_synthetic_cache_another_process_finished_first(tmp_path, monkeypatch):
  root = str(tmp_path / 'cache')
  build = ext._build

  def racing(tmp, *args):                # the other process renames its build in just before us
    build(tmp, *args)
    shutil.copytree(tmp, tmp.rsplit('.tmp-', 1)[0])
  monkeypatch.setattr(ext, '_build', racing)
  lists = ext.synthetic_feature_lists(tiny_cfg(), 0, cache_dir=root)
  assert _entries(root) == [os.path.basename(os.path.dirname(lists['train']))]
  assert len(FeatureSequences(lists['train'], ext.VIOLENCE_CLASSES, 4)) == 8


def test_synthetic_cache_pool_matches_loop(tmp_path, monkeypatch):
  import multiprocessing
  monkeypatch.setattr(ext, 'POOL_MIN_VIDEOS', 0)
  monkeypatch.setattr(ext, 'CHUNK', 3)
  contexts, get_context = [], multiprocessing.get_context
  monkeypatch.setattr(multiprocessing, 'get_context', lambda m: contexts.append(m) or get_context(m))
  loop = ext.synthetic_feature_lists(tiny_cfg(), 1, cache_dir=str(tmp_path / 'a'), workers=1)
  assert contexts == []
  pool = ext.synthetic_feature_lists(tiny_cfg(), 1, cache_dir=str(tmp_path / 'b'), workers=2)
  assert contexts == ['spawn']
  for split in ext.SPLITS:
    assert open(loop[split]).read() == open(pool[split]).read()
    for i in range(4):
      f = f'{split}/{i:05d}.npy'
      a, b = (np.load(os.path.join(os.path.dirname(p[split]), f)) for p in (loop, pool))
      np.testing.assert_array_equal(a, b)


def test_violence_config_reads_the_built_in_set(tmp_path):
  from configs import violence
  from vad_jax.data import sources
  c = violence.get_config('tiny')
  c.data.cache_dir = str(tmp_path)
  src = sources.make(c, 'train')
  assert isinstance(src, FeatureSequences) and len(src) == c.data.num_train
  ex = src.train_transform(src[0], np.random.default_rng(0))
  assert ex['features'].shape == (c.data.clip_len, descriptors.FEATURE_DIM)


def test_unknown_extractor_and_missing_inputs(tmp_path):
  with pytest.raises(ValueError, match="unknown extractor 'resnet'"):
    ext.synthetic_feature_lists(tiny_cfg(), 0, extractor='resnet', cache_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match='no.h5'):
    ext.synthetic_feature_lists(tiny_cfg(), 0, extractor=f'keras:{tmp_path}/no.h5',
                                cache_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match='config.json'):
    ext.synthetic_feature_lists(tiny_cfg(), 0, extractor=f'run:{tmp_path}', cache_dir=str(tmp_path))


# ----------------------------------------------------------------------------- trunk extractors
def _random_variables(model, channels=3, seed=0):
  """Random EfficientNet variables from the shapes alone (no init compile)."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, channels)),
                                             train=False))
  rng = np.random.default_rng(seed)
  out = jax.tree_util.tree_map_with_path(
      lambda p, s: (rng.uniform(0.5, 1.5, s.shape) if p[-1].key == 'var' else
                    rng.normal(0, 0.2, s.shape)).astype(np.float32), shapes)
  return {k: dict(v) for k, v in out.items()}


def _trunk_reference(model, variables, video, mode):
  from vad_jax.models.inputs import trunk_inputs
  fn = jax.jit(lambda v, video: model.apply(v, trunk_inputs(video[None], mode)[0], train=False))
  return np.asarray(fn(variables, video))


def _write_legacy_keras_h5(path, variables):
  """variables of EfficientNet(padding='same') -> a legacy Keras .h5 (layer_names/weight_names),
  the layout of keras.applications' efficientnetb0_notop.h5, without needing Keras."""
  import h5py
  from vad_jax.convert.keras import keras_efficientnet_layer_names

  def at(tree, path):
    for k in path:
      tree = tree[k]
    return tree
  with h5py.File(path, 'w') as f:
    seq = keras_efficientnet_layer_names(1.0, 1.0)
    f.attrs['layer_names'] = [k.encode() for k, _, _ in seq]
    for kname, _, ours in seq:
      p = at(variables['params'], ours)
      if ours[-1] in ('bn', 'expand_bn', 'project_bn'):
        s = at(variables['batch_stats'], ours)
        arrays = [p['scale'], p['bias'], s['mean'], s['var']]
      elif ours[-1] == 'dwconv':
        arrays = [np.swapaxes(p['kernel'], 2, 3)]
      else:
        arrays = [p['kernel']] + ([p['bias']] if ours[-1].startswith('se_') else [])
      g = f.create_group(kname)
      g.attrs['weight_names'] = [f'w{i}'.encode() for i in range(len(arrays))]
      for i, a in enumerate(arrays):
        g[f'w{i}'] = a


def test_keras_extractor(tmp_path):
  from vad_jax.models.efficientnet import EfficientNet
  model = EfficientNet(padding='same')                             # B0: the converter's variants
  variables = _random_variables(model)
  _write_legacy_keras_h5(str(tmp_path / 'b0.h5'), variables)
  cfg = tiny_cfg(num_train=2, num_validation=1, num_test=1)
  lists = ext.synthetic_feature_lists(cfg, 0, extractor=f'keras:{tmp_path}/b0.h5',
                                      cache_dir=str(tmp_path / 'cache'))
  src = FeatureSequences(lists['train'], ext.VIOLENCE_CLASSES, 4)
  assert src.feature_dim == 1280
  video = SyntheticVideos(ext.split_specs(cfg, 0)['train'], 'train')[1]['frames']
  np.testing.assert_allclose(src[1]['features'], _trunk_reference(model, variables, video, 'rgb'),
                             rtol=2e-4, atol=2e-4)


def test_run_extractor(tmp_path):
  """A hybrid run's best checkpoint: the trunk's EMA-free variables, its model.input."""
  import orbax.checkpoint as ocp
  from vad_jax.models.efficientnet import EfficientNet
  trunk = dict(width_mult=0.1, depth_mult=0.1, padding='symmetric', depthwise_impl='xla',
               drop_connect_rate=0.0, bn_momentum=0.9, frozen_stages=0, weights='')
  model = EfficientNet(**{k: v for k, v in trunk.items() if k not in ('frozen_stages', 'weights')})
  variables = _random_variables(model, channels=6)
  wd = tmp_path / 'run'
  os.makedirs(wd / 'best')
  (wd / 'config.json').write_text(json.dumps({'system': 'hybrid', 'best_metric': 'frame_auc',
                                              'model': {'trunk': trunk, 'input': 'motion'}}))
  state = {'step': np.int32(7), 'params': {'trunk': variables['params'], 'bilstm': {'w': np.ones(2)}},
           'model_state': {'batch_stats': {'trunk': variables['batch_stats']}}, 'ema': None}
  with ocp.PyTreeCheckpointer() as ckptr:
    ckptr.save(str(wd / 'best' / '7' / 'state'), state)
  cfg = tiny_cfg(num_train=2, num_validation=1, num_test=1)
  lists = ext.synthetic_feature_lists(cfg, 0, extractor=f'run:{wd}', cache_dir=str(tmp_path / 'c'))
  src = FeatureSequences(lists['validation'], ext.VIOLENCE_CLASSES, 4)
  video = SyntheticVideos(ext.split_specs(cfg, 0)['validation'], 'validation')[0]['frames']
  np.testing.assert_allclose(src[0]['features'],
                             _trunk_reference(model, variables, video, 'motion'), rtol=1e-4,
                             atol=1e-4)
