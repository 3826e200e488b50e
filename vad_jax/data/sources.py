"""Data sources by name (`config.data.source`); each returns a `vad_jax.data.source.Source`.

  synthetic            the built-in procedural surveillance videos (no download)
  features             per-video feature arrays listed in `data.{train,validation,test}_list`
                       (CSV `path,label`; `.npy` of [T, F] or [T, crops, F])
  synthetic_features   features of the built-in videos, extracted on first use and cached on
                       disk in the `features` layout (vad_jax.extract.synthetic)
  prepared             a dataset prepared by `python -m vad_jax.prepare` (UCF-Crime videos,
                       the Kaggle UCF-Crime frames, RWF-2000) in `data.data_dir`
  prepared_features    per-frame features of a prepared dataset (RWF-2000 for the violence
                       system), extracted with `data.extractor` on first use and cached beside
                       it (vad_jax.extract.prepared)
  synthetic_frames     single frames of the built-in videos (seed 002's frame classifier), split
                       by video; minority classes get severity-scaled heavy augmentation in
                       training (`data.severity`, vad_jax.data.severity)
  person_frames        frames of the built-in videos with their person boxes (seed 004's
                       detector), split by video; `data.box_augment` moves boxes with pixels
  yolo                 a YOLO label tree (`images/<split>/`, `labels/<split>/*.txt`, one
                       `class cx cy w h` line an object): vad_jax.data.yolo
  published_features   the published snippet-feature sets (RTFM / UR-DMU / VadCLIP / C3D lists,
                       gt or annotation files): vad_jax.data.published; validation carved from
                       the training list
"""

from __future__ import annotations

import numpy as np

from vad_jax.classes import CLASS_NAMES
from vad_jax.data import synthetic
from vad_jax.data.frames import SyntheticFrames

SPLITS = ('train', 'validation', 'test')


class SyntheticSource(synthetic.SyntheticVideos):
  """SyntheticVideos under the Source contract: 'frames' is served as 'video'."""
  class_names = CLASS_NAMES
  sequence_field = 'video'

  def __getitem__(self, index: int) -> dict:
    example = super().__getitem__(index)
    example['video'] = example.pop('frames')
    return example

  def lengths(self) -> np.ndarray:
    return np.full(len(self), self.spec.num_frames, np.int64)

  def train_transform(self, example: dict, rng: np.random.Generator) -> dict:
    del rng
    return example

  def eval_transform(self, example: dict) -> dict:
    return example


def _synthetic(config, split: str, request: dict):
  d = config.data
  spec = synthetic.SyntheticSpec(
      height=d.height, width=d.width,
      num_frames=request.get('train_frames', d.eval_frames) if split == 'train' else d.eval_frames,
      num_videos={'train': d.num_train, 'validation': d.num_validation, 'test': d.num_test}[split],
      normal_fraction=d.normal_fraction, class_imbalance=d.class_imbalance,
      window=tuple(d.window), min_event_px=d.min_event_px, seed=config.seed)
  return SyntheticSource(spec, split)


class AugmentedFrames(SyntheticFrames):
  """SyntheticFrames whose training transform is `augment` (the class-severity augmentation of
  vad_jax.data.severity, or None)."""
  augment = None

  def train_transform(self, example: dict, rng: np.random.Generator) -> dict:
    return self.augment(example, rng) if self.augment else example


def _frames_spec(config, split: str) -> synthetic.SyntheticSpec:
  """The videos a frame source takes its frames from (`data.num_frames` frames each)."""
  d = config.data
  return synthetic.SyntheticSpec(
      height=d.height, width=d.width, num_frames=d.num_frames,
      num_videos={'train': d.num_train, 'validation': d.num_validation, 'test': d.num_test}[split],
      normal_fraction=d.normal_fraction, class_imbalance=d.class_imbalance,
      window=tuple(d.window), min_event_px=d.min_event_px, seed=config.seed)


def _synthetic_frames(config, split: str, request: dict):
  del request
  from vad_jax.data import severity
  d = config.data
  spec = _frames_spec(config, split)
  src = AugmentedFrames(spec, split, d.frames_per_video, d.label_mode)
  if split == 'train' and d.severity != 'none':
    counts = np.bincount(src.labels(), minlength=len(CLASS_NAMES))
    src.augment = severity.random_map(severity.severity_from_counts(counts, d.severity))
  return src


def _person_frames(config, split: str, request: dict):
  del request
  from vad_jax.data import box_augment
  from vad_jax.data.person_frames import PersonFrames
  d = config.data
  spec = _frames_spec(config, split)
  src = PersonFrames(spec, split, d.frames_per_video)
  if split == 'train':
    src.augment = box_augment.make_augment(d.box_augment)
  return src


def _yolo(config, split: str, request: dict):
  del request
  from vad_jax.data import yolo
  return yolo.source_from_config(config, split)


def _features(config, split: str, request: dict):
  del request
  from vad_jax.data.features import FeatureSequences
  d = config.data
  path = d[f'{split}_list']
  if not path:
    raise ValueError(f'config.data.{split}_list is empty: give the list file of the {split} split '
                     '(one `path,label` line a video)')
  return FeatureSequences(path, tuple(d.class_names), d.clip_len, crops=d.crops)


def _synthetic_features(config, split: str, request: dict):
  del request
  from vad_jax.data.features import FeatureSequences
  from vad_jax.extract.synthetic import VIOLENCE_CLASSES, synthetic_feature_lists
  d = config.data
  lists = synthetic_feature_lists(d, config.seed, d.extractor, d.cache_dir)
  return FeatureSequences(lists[split], VIOLENCE_CLASSES, d.clip_len)


def prepare_spec(config):
  """The PrepareSpec a config reads (data.dataset, fps, height, width, val_fraction, seed)."""
  from vad_jax.prepare.builder import PrepareSpec
  d = config.data
  return PrepareSpec(dataset=d.dataset, height=d.height, width=d.width, fps=d.fps or None,
                     val_fraction=d.val_fraction, seed=d.split_seed, encoding=d.encoding)


def _prepared(config, split: str, request: dict):
  from vad_jax.data.prepared import PreparedVideos
  d = config.data
  if not d.data_dir:
    raise ValueError('config.data.data_dir is empty: give the --data_dir of '
                     '`python -m vad_jax.prepare`')
  return PreparedVideos(d.data_dir, prepare_spec(config), split,
                        train_frames=request.get('train_frames', d.clip_len),
                        min_frames=d.clip_len)


def _published_features(config, split: str, request: dict):
  """Train / validation: the training list, validation carved from it (seeded, per class);
  test: the test list with per-frame truth from data.gt, else from data.annotations, else none
  (video-level metrics only)."""
  from absl import logging
  from vad_jax.data import annotations, published
  from vad_jax.data.splits import carve_validation
  d = config.data
  names = tuple(d.class_names)
  kw = dict(segments=request.get('segments', 32), bins=d.bins, train_crop=d.train_crop,
            feature_dim=d.feature_dim or None, snippet_frames=d.snippet_frames,
            min_len=d.clip_len)
  key = 'test_list' if split == 'test' else 'train_list'
  if not d[key]:
    raise ValueError(f'config.data.{key} is empty: give the list file of the '
                     f'{"test" if split == "test" else "training"} videos')
  entries = published.read_list(d[key], d.list_format, d.feature_root or None)
  source = published.PublishedFeatures(entries, names, **kw)
  if split != 'test':
    train, val = carve_validation(source.labels(), d.val_fraction, d.split_seed)
    keep = train if split == 'train' else val
    if not len(keep):
      raise ValueError(f'data.val_fraction={d.val_fraction} leaves the {split} split empty')
    return published.PublishedFeatures([entries[i] for i in keep], names, **kw)
  lengths = source.lengths()
  if d.gt:
    masks = published.split_gt(np.load(d.gt), lengths, d.snippet_frames)
  elif d.annotations:
    parse = {'ucf': annotations.parse_ucf_temporal, 'xd': annotations.parse_xd}
    if d.annotation_format not in parse:
      raise ValueError(f"data.annotation_format={d.annotation_format!r}: 'ucf' or 'xd'")
    notes = (parse['xd'](d.annotations) if d.annotation_format == 'xd' else
             parse['ucf'](d.annotations, names if len(names) > 2 else CLASS_NAMES))
    warnings = []
    gt, offsets = published.build_gt(entries, lengths, notes, d.snippet_frames, base=1,
                                     class_names=names, warnings=warnings)
    for w in warnings:
      logging.warning('%s', w)
    masks = [gt[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
  else:
    logging.warning('no data.gt or data.annotations: the test split has no per-frame truth '
                    '(video-level metrics only)')
    return source
  return published.PublishedFeatures(entries, names, masks=masks, **kw)


def _prepared_features(config, split: str, request: dict):
  from vad_jax.extract.prepared import source_from_config
  return source_from_config(config, split, request)


SOURCES = {'synthetic': _synthetic, 'synthetic_frames': _synthetic_frames, 'features': _features,
           'synthetic_features': _synthetic_features, 'prepared': _prepared,
           'prepared_features': _prepared_features,
           'published_features': _published_features, 'person_frames': _person_frames,
           'yolo': _yolo}


def make(config, split: str, request: dict | None = None):
  """The source of `split` named by `config.data.source`; `request` is the system's
  `data_request(config)` (e.g. {'train_frames': N})."""
  if split not in SPLITS:
    raise ValueError(f'unknown split {split!r}; expected one of {SPLITS}')
  name = config.data.source
  if name not in SOURCES:
    raise ValueError(f'config.data.source={name!r}; known sources: {sorted(SOURCES)}')
  return SOURCES[name](config, split, request or {})


def make_splits(config, request: dict | None = None) -> dict:
  """{split: source} for every split, refusing (SplitLeak) sources that say which video each
  example comes from (`video_ids()`, e.g. frame datasets) when one video is in two splits."""
  from vad_jax.data.splits import check_sources_disjoint
  srcs = {split: make(config, split, request) for split in SPLITS}
  if all(hasattr(s, 'video_ids') for s in srcs.values()):
    check_sources_disjoint(srcs)
  return srcs
