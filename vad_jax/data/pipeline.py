"""Input pipelines: a random-access video source -> grain -> per-process numpy batches.

Training sees weak labels only: a batch is {'video': uint8 [b, N, H, W, 3], 'label': int32 [b]}
(the video-level class); masks and boxes never reach the train step. Evaluation batches also
carry the per-frame 'mask' and the video 'index'. Each process reads its own slice of the videos
(`ds[process_index::process_count]`) and turns its part of the batch into global arrays with
`vad_jax.train.mesh.to_global`.
"""

from typing import Iterator

import grain
import jax
import numpy as np

from vad_jax.data import synthetic, views

SPLITS = ('train', 'validation', 'test')


def make_source(config, split: str, train_frames: int):
  """The data source of `split`; training videos have `train_frames` frames."""
  if split not in SPLITS:
    raise ValueError(f'unknown split {split!r}; expected one of {SPLITS}')
  d = config.data
  if d.source != 'synthetic':
    raise ValueError(f"config.data.source={d.source!r}: only 'synthetic' is available so far")
  spec = synthetic.SyntheticSpec(
      height=d.height, width=d.width,
      num_frames=train_frames if split == 'train' else d.eval_frames,
      num_videos={'train': d.num_train, 'validation': d.num_validation, 'test': d.num_test}[split],
      normal_fraction=d.normal_fraction, class_imbalance=d.class_imbalance,
      window=tuple(d.window), min_event_px=d.min_event_px, seed=config.seed)
  return synthetic.SyntheticVideos(spec, split)


def _weak(example: dict) -> dict:
  return {'video': example['frames'], 'label': np.int32(example['label'])}


def _eval_fields(example: dict) -> dict:
  return {'video': example['frames'], 'label': np.int32(example['label']),
          'mask': example['mask'], 'index': np.int32(example['index'])}


def _read_options(config) -> grain.ReadOptions:
  return grain.ReadOptions(num_threads=config.data.worker_threads, prefetch_buffer_size=4)


def train_iterator(config, source, global_videos: int, seed: int) -> grain.DatasetIterator:
  """Endless, reshuffled-every-epoch iterator of this process's training batches (checkpointable),
  augmented per video by `data.augment` (vad_jax.data.views; deterministic per position)."""
  per_process, rest = divmod(global_videos, jax.process_count())
  if rest:
    raise ValueError(f'{global_videos} videos a step do not split over {jax.process_count()} hosts')
  ds = grain.MapDataset.source(source)[jax.process_index()::jax.process_count()]
  ds = ds.shuffle(seed=seed).repeat().map(_weak)
  augment = views.parse(config.data.augment, 'data.augment')
  if augment:
    ds = ds.random_map(views.random_augment(tuple(v[0] for v in augment)), seed=seed + 1)
  ds = ds.batch(per_process, drop_remainder=True)
  return iter(ds.to_iter_dataset(_read_options(config)))


def eval_batches(config, source, global_videos: int) -> Iterator[dict]:
  """One pass over `source` in global batches of `global_videos`, this process's rows of each.

  Every host takes part in every batch: rows past the end repeat the last video with 'index' = -1
  (drop them after gathering).
  """
  per_process = global_videos // jax.process_count()
  num_batches = -(-len(source) // global_videos)
  first = jax.process_index() * per_process

  def fetch(position: int) -> dict:
    b, row = divmod(position, per_process)
    index = b * global_videos + first + row
    example = _eval_fields(source[min(index, len(source) - 1)])
    if index >= len(source):
      example['index'] = np.int32(-1)
    return example

  ds = grain.MapDataset.range(num_batches * per_process).map(fetch).batch(per_process)
  yield from ds.to_iter_dataset(_read_options(config))
