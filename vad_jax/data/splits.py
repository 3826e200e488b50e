"""Splits by video: a seeded, class-stratified validation carve, and the leak check every
real-data source runs (no video may sit in two splits).

UCF-Crime, RWF-2000 and the published feature lists have no validation split; checkpoints must
still be chosen without the test set, so one is carved from the training videos.
"""

from __future__ import annotations

import numpy as np

from vad_jax.data.source import DataError


class SplitLeak(DataError):
  """Raised when one video would be in two splits."""


def carve_validation(labels, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(train indices, validation indices) into `labels` (int [N], one per training video).

  Per class c with n_c videos, round(fraction * n_c) of them go to validation (at least 1 when
  fraction > 0 and n_c >= 2; a class with one video stays in training), chosen by a permutation
  seeded with (seed, c): the carve of one class does not depend on the others. Both index
  arrays are sorted.
  """
  labels = np.asarray(labels)
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f'validation fraction must be in [0, 1), got {fraction}')
  val = []
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    n = len(members)
    k = int(round(fraction * n))
    if fraction > 0 and n >= 2:
      k = min(max(k, 1), n - 1)
    else:
      k = 0
    perm = np.random.default_rng([int(seed), int(c)]).permutation(n)
    val.extend(members[perm[:k]].tolist())
  val = np.sort(np.asarray(val, np.int64))
  train = np.setdiff1d(np.arange(len(labels)), val)
  return train, val


def check_disjoint(splits: dict[str, list[str]], what: str = 'video') -> None:
  """Raises SplitLeak naming the first shared name when any two splits share a `what`."""
  seen: dict[str, str] = {}
  for split, names in splits.items():
    for name in names:
      if name in seen and seen[name] != split:
        raise SplitLeak(f'{what} {name!r} is in both the {seen[name]} and the {split} split: '
                        f'frames of one {what} may never be in two splits')
      seen[name] = split


def check_sources_disjoint(sources: dict) -> None:
  """Raises SplitLeak naming a video whose examples are in two of `sources` (split name -> a
  source with `video_ids()`, one name a example, e.g. the frames of `data/frames.py`)."""
  check_disjoint({name: list(dict.fromkeys(s.video_ids())) for name, s in sources.items()})
