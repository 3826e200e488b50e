"""Input pipelines: a random-access source -> grain -> per-process numpy batches.

Training batches hold only the fields the system's loss reads (`System.train_fields`): a weakly
supervised system declares ('video', 'label'), so per-frame masks and boxes can never reach its
train step. Evaluation batches hold the fields `predict` reads plus what evaluators need:
'label', 'index', 'length' (true sequence length) and 'mask' where the source has one. Each
process reads its own rows of every global batch of one global shuffled stream (training) or its
own slice of the examples (evaluation) and turns its part of a batch into global arrays with
`vad_jax.mesh.to_global`.
"""

from typing import Iterator

import grain
import jax
import numpy as np

from vad_jax.data import sampling, views

def _read_options(config) -> grain.ReadOptions:
  return grain.ReadOptions(num_threads=config.data.worker_threads, prefetch_buffer_size=4)


def _select(fields):
  def select(example: dict) -> dict:
    missing = [f for f in fields if f not in example]
    if missing:
      raise KeyError(f'the data source gives {sorted(example)}; the system needs {missing}')
    return {f: np.int32(example[f]) if f == 'label' else example[f] for f in fields}
  return select


def _train_random_map(config, source):
  """Source-specific training randomness (clip sampling), then the configured video views."""
  augment = views.parse(config.data.get('augment', ''), 'data.augment')
  names = tuple(v[0] for v in augment)
  augment_fn = views.random_augment(names, source.sequence_field) if names else None

  def transform(example: dict, rng: np.random.Generator) -> dict:
    example = source.train_transform(example, rng)
    return augment_fn(example, rng) if augment_fn else example
  return transform


def train_iterator(config, source, fields, global_batch: int, seed: int,
                   rows=None) -> grain.DatasetIterator:
  """Endless, reshuffled-every-epoch iterator of this process's training batches of `fields`
  (checkpointable); per-example randomness is deterministic per position. With
  `data.sampling_power` > 0 examples are drawn with replacement, weight ∝ n_class^-power.

  One global stream: every process shuffles (and augments) the same global sequence, and global
  batch b is its elements b * global_batch ... (b + 1) * global_batch - 1 in order, whatever the
  process count. `rows` [global_batch / process_count] are the rows of a global batch this
  process supplies, in the order `mesh.to_global` places its local batch (`mesh.process_rows`;
  default: this process's contiguous block), so 2 processes train on exactly the batches 1 does.
  """
  per_process, rest = divmod(global_batch, jax.process_count())
  if rest:
    raise ValueError(f'{global_batch} examples a step do not split over {jax.process_count()} hosts')
  if rows is None:
    rows = np.arange(per_process) + jax.process_index() * per_process
  rows = np.asarray(rows, np.int64)
  if rows.shape != (per_process,):
    raise ValueError(f'{len(rows)} rows of a {global_batch}-example batch for this process; '
                     f'{per_process} expected')
  if config.data.get('augment') and source.sequence_field not in ('video', 'image'):
    raise ValueError(f'data.augment={config.data.augment!r} transforms videos and images; this '
                     f"source gives {source.sequence_field!r}: set data.augment=''")
  power = float(config.data.get('sampling_power', 0.0))
  if power > 0:      # class-weighted draws with replacement (vad_jax.data.sampling)
    ds = sampling.weighted_dataset(source, source.labels(), power, seed)
  else:
    ds = grain.MapDataset.source(source).shuffle(seed=seed).repeat()
  ds = ds.random_map(_train_random_map(config, source), seed=seed + 1).map(_select(fields))
  if not np.array_equal(rows, np.arange(global_batch)):   # several processes: take our rows
    ds = _rows_of_batches(ds, rows, global_batch)
  ds = ds.batch(per_process, drop_remainder=True)
  return iter(ds.to_iter_dataset(_read_options(config)))


def _rows_of_batches(ds: grain.MapDataset, rows: np.ndarray, global_batch: int) -> grain.MapDataset:
  """Local position j -> global position (j // k) * global_batch + rows[j % k] (k = len(rows))."""
  k = len(rows)
  return grain.MapDataset.range(len(ds) // global_batch * k).map(
      lambda j: ds[(j // k) * global_batch + int(rows[j % k])])


def element_spec(config, source, fields) -> dict:
  """{field: jax.ShapeDtypeStruct} of one training example as the train step sees it (read off
  example 0 after the training transform)."""
  example = _select(fields)(_train_random_map(config, source)(source[0],
                                                              np.random.default_rng(0)))
  return {k: jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype) for k, v in example.items()}


def batch_spec(spec: dict, batch: int) -> dict:
  return {k: jax.ShapeDtypeStruct((batch, *s.shape), s.dtype) for k, s in spec.items()}


def eval_pad_length(source) -> int:
  """Sequence length every evaluation example is padded to: that of the longest one."""
  longest = int(np.argmax(source.lengths()))
  return len(source.eval_transform(source[longest])[source.sequence_field])


def _pad(a: np.ndarray, n: int) -> np.ndarray:
  """Pads the first axis to n by repeating the last entry (keeps per-video statistics sane)."""
  if len(a) == n:
    return a
  return np.concatenate([a, np.repeat(a[-1:], n - len(a), axis=0)])


def eval_windows(lengths, window: int, overlap: int) -> list[tuple[int, int, int]]:
  """(example, start, stop) of every evaluation window: windows of `window` steps, each sharing
  `overlap` steps with the previous one, until the sequence's end (the last may be shorter)."""
  out = []
  for v, n in enumerate(lengths):
    start = 0
    while True:
      out.append((v, start, min(start + window, int(n))))
      if start + window >= n:
        break
      start += window - overlap
  return out


def check_window(config) -> tuple[int, int]:
  """(window, overlap) from `data.eval_window` (0 = whole sequences): windows of W steps that
  share T - S steps (T = data.clip_len, S = data.eval_stride), so the clips of consecutive
  windows continue one grid of clip starts and stitch back into the whole sequence's clips."""
  d = config.data
  window = int(d.get('eval_window', 0) or 0)
  if not window:
    return 0, 0
  stride = int(d.get('eval_stride', d.clip_len))
  if window < d.clip_len or (window - d.clip_len) % stride:
    raise ValueError(f'data.eval_window={window} must be data.clip_len ({d.clip_len}) plus a '
                     f'multiple of data.eval_stride ({stride})')
  return window, d.clip_len - stride


def _eval_example(source, v: int, start: int, stop: int | None) -> dict:
  """Example v after the evaluation transform, restricted to steps [start, stop) when windowed
  (a source with `eval_window` decodes only those steps)."""
  if stop is None:
    return source.eval_transform(source[v])
  if hasattr(source, 'eval_window'):
    return source.eval_window(source[v], start, stop)
  example = dict(source.eval_transform(source[v]))
  seq, k = source.sequence_field, getattr(source, 'snippet_frames', 1)
  example[seq] = example[seq][start:stop]
  if 'mask' in example:
    example['mask'] = example['mask'][start * k:stop * k]
  return example


def eval_batches(config, source, fields, global_batch: int,
                 extra_fields: tuple[str, ...] = ()) -> Iterator[dict]:
  """One pass over `source` in global batches, this process's rows of each: `fields`
  plus 'label', 'index', 'length', the `extra_fields` evaluators read (e.g. a detector's true
  'boxes', fixed-shape) and, where the source has per-frame truth, 'mask' and 'num_frames'
  (frames it annotates).

  Sequences are padded to `eval_pad_length(source)` ('length' keeps the true one); masks to that
  times the source's `snippet_frames` (frames a sequence step covers; 1 for videos), with 0.
  With `data.eval_window` > 0 every sequence is cut into windows (`check_window`), one row each,
  padded to the window, with 'window_start' (vad_jax.evaluate.scoring stitches them): memory
  no longer grows with the longest video, and short videos are not padded to it.
  Every host takes part in every batch: rows past the end repeat the last example with
  'index' = -1 (drop them after gathering).
  """
  window, overlap = check_window(config)
  if window:
    items = eval_windows(np.maximum(source.lengths(), config.data.clip_len), window, overlap)
    pad_to = window
  else:
    items = [(v, 0, None) for v in range(len(source))]
    pad_to = eval_pad_length(source)
  per_process = global_batch // jax.process_count()
  num_batches = -(-len(items) // global_batch)
  first = jax.process_index() * per_process
  seq = source.sequence_field
  mask_to = pad_to * getattr(source, 'snippet_frames', 1)

  def fetch(position: int) -> dict:
    b, row = divmod(position, per_process)
    index = b * global_batch + first + row
    v, start, stop = items[min(index, len(items) - 1)]
    example = _eval_example(source, v, start, stop)
    out = {f: example[f] for f in fields}
    missing = [f for f in extra_fields if f not in example]
    if missing:
      raise KeyError(f'the evaluators read {missing}; the data source gives {sorted(example)}')
    out.update({f: example[f] for f in extra_fields})
    length = len(example[seq])
    if seq in out:
      out[seq] = _pad(out[seq], pad_to)
    out['label'] = np.int32(example['label'])
    out['index'] = np.int32(example['index'] if index < len(items) else -1)
    out['length'] = np.int32(length)
    if window:
      out['window_start'] = np.int32(start)
    if 'mask' in example:
      mask = example['mask']
      if len(mask) > mask_to:
        raise ValueError(f'example {v}: {len(mask)} annotated frames, more than its '
                         f'sequence covers ({mask_to})')
      out['mask'] = np.pad(mask, (0, mask_to - len(mask)))
      out['num_frames'] = np.int32(len(mask))
    return out

  ds = grain.MapDataset.range(num_batches * per_process).map(fetch).batch(per_process)
  yield from ds.to_iter_dataset(_read_options(config))
