"""Class-balanced (weighted) sampling for the training iterator (seed 002: extreme imbalance).

`weighted_dataset(source, labels, power, seed)` is an endless grain MapDataset: position p is
`source[j]` with j the (p % N)-th of the N indices epoch e = p // N draws with replacement from
`class_weights(labels, power)` under ``np.random.default_rng([seed, e])``. Every position is a
pure function of (labels, power, seed, p), so the stream is random access, checkpointable like
any MapDataset, and every process reads its rows of the same global stream; it slots in where
`pipeline.train_iterator` has ``MapDataset.source(source).shuffle(seed).repeat()``.
"""

from __future__ import annotations

import grain
import numpy as np

__all__ = ['class_weights', 'epoch_indices', 'weighted_dataset', 'WeightedSource']


def class_weights(labels, power: float = 1.0) -> np.ndarray:
  """float64 [N]: example weights proportional to n_{y_i} ** -power, summing to 1 (n_c: examples
  of class c). power 0: uniform over examples; 1: every present class equally likely."""
  labels = np.asarray(labels).astype(np.int64).reshape(-1)
  if not len(labels):
    raise ValueError('class_weights: no labels')
  if labels.min() < 0:
    raise ValueError(f'class_weights: labels must be >= 0, got {labels.min()}')
  counts = np.bincount(labels).astype(np.float64)
  w = counts[labels] ** -float(power)
  return w / w.sum()


def epoch_indices(weights: np.ndarray, seed: int, epoch: int) -> np.ndarray:
  """int64 [N]: the N example indices epoch `epoch` draws with replacement from `weights`."""
  rng = np.random.default_rng([int(seed), int(epoch)])
  return rng.choice(len(weights), size=len(weights), replace=True, p=weights).astype(np.int64)


class WeightedSource:
  """grain random-access source of the endless weighted stream (module docstring).

  Length N * floor(2**62 / N) (whole epochs; more than any run reads). Keeps the draws of the
  two most recently read epochs (reader threads straddle an epoch boundary); concurrent misses
  just draw the same epoch twice.
  """

  def __init__(self, source, labels, power: float, seed: int):
    self.source = source
    self.weights = class_weights(labels, power)
    if len(self.weights) != len(source):
      raise ValueError(f'{len(self.weights)} labels for a source of {len(source)} examples')
    self.seed = int(seed)
    self._cache: dict[int, np.ndarray] = {}

  def __len__(self) -> int:
    n = len(self.weights)
    return n * ((1 << 62) // n)

  def __getstate__(self):
    return {**self.__dict__, '_cache': {}}

  def indices(self, epoch: int) -> np.ndarray:
    """The draw of `epoch` (cached)."""
    cache = self._cache
    idx = cache.get(epoch)
    if idx is None:
      idx = epoch_indices(self.weights, self.seed, epoch)
      keep = {**cache, epoch: idx}
      self._cache = dict(sorted(keep.items())[-2:])   # replaced whole: readers never see a half
    return idx

  def source_index(self, position: int) -> int:
    epoch, i = divmod(int(position), len(self.weights))
    return int(self.indices(epoch)[i])

  def __getitem__(self, position: int):
    position = int(position)
    if not 0 <= position < len(self):
      raise IndexError(position)
    return self.source[self.source_index(position)]


def weighted_dataset(source, labels=None, power: float = 1.0, seed: int = 0) -> grain.MapDataset:
  """Endless MapDataset of `source` examples drawn by `class_weights(labels, power)` (labels
  default to ``source.labels()``); deterministic per position (module docstring)."""
  labels = source.labels() if labels is None else labels
  return grain.MapDataset.source(WeightedSource(source, labels, power, seed))
