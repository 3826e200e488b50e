"""The data-source contract every source satisfies, and what the data layer reports to a system.

A source is a grain random-access data source of one split (`__len__`, `__getitem__(i) -> dict`,
picklable, deterministic per index) that also says, without decoding anything, what it holds:

  class_names   tuple[str, ...]   label vocabulary (index = label id)
  labels()      int32 [len]       every example's label
  lengths()     int64 [len]       every example's sequence length (frames / feature vectors)
  sequence_field  str             the field whose first axis is time ('video' or 'features')
  train_transform(example, rng)   per-example randomness of training (clip sampling, jitter);
                                  np.random.Generator from grain: deterministic per position
  eval_transform(example)         the deterministic counterpart used for validation and test

An example holds the `sequence_field` array, 'label' int32 and 'index' int32, and, where the
source knows it, 'mask' uint8 [T] (per-frame truth: evaluation only) and detector boxes.
Detection sources: 'label' is the number of objects in the image, `class_names` the object
classes, and `class_counts()` int64 [C] the objects of each class (the trainer's class counts;
other sources are counted with a bincount of `labels()`).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, runtime_checkable

import numpy as np


class DataError(ValueError):
  """Data the user gave that cannot be used (a bad label line, a leak between splits, an
  unreadable video); the message names the file. The entry point prints it without a traceback."""


@runtime_checkable
class Source(Protocol):
  class_names: tuple[str, ...]
  sequence_field: str

  def __len__(self) -> int: ...

  def __getitem__(self, index: int) -> dict: ...

  def labels(self) -> np.ndarray: ...

  def lengths(self) -> np.ndarray: ...

  def train_transform(self, example: dict, rng: np.random.Generator) -> dict: ...

  def eval_transform(self, example: dict) -> dict: ...


@dataclasses.dataclass(frozen=True)
class DataInfo:
  """What the data layer tells a system before it is built.

  class_names: the label vocabulary; class_counts: int64 [C] training examples per class;
  element_spec: {field: jax.ShapeDtypeStruct} of ONE training example as the train step sees it
  (no batch axis): the system initialises its model from it, never from a hand-built shape.
  """
  class_names: tuple[str, ...]
  class_counts: np.ndarray
  element_spec: dict

  @property
  def num_classes(self) -> int:
    return len(self.class_names)
