"""The System contract: what the one trainer needs from a model + its losses + its outputs.

The trainer (vad_jax.train) calls only these members; it imports no model code. A system is
built from the config and what the data layer reports (`DataInfo`: class names and counts, the
element spec of one training example), so no shape is ever written by hand.

  task             'anomaly' | 'classification' | 'detection': what `predict` returns
  train_fields     batch fields `loss` reads (the pipeline drops every other field, so frame
                   masks can never reach a weakly supervised loss)
  predict_fields   batch fields `predict` reads (the first is the one test-time views transform)
  mix_field        the input field mixup / CutMix may mix (None: the system reads no mixed
                   batches); a mixed batch also holds 'label_b' [B] and 'mix_lam' [B], and the
                   loss combines lam * L(label) + (1 - lam) * L(label_b)
  check_config(config)              ValueError for values the system cannot run (classmethod)
  data_request(config)              {key: value} the source needs from the system (e.g. the
                                    frames of a training video); classmethod, before building
  examples_per_step(config)         global rows of a training batch (default config.batch_size)
  from_config(config, info)         -> system
  init(rng, spec)                   variables from a batch spec {field: ShapeDtypeStruct}
  loss(variables, batch, rng)       -> (loss, (metrics, updates)); `updates` replaces the
                                    mutable collections it names (BatchNorm statistics, ...)
  predict(variables, batch)         -> dict of arrays, leading axis = batch
  definitions()                     {key: text} defining its outputs (e.g. the anomaly score)
  frozen_params()                   regexes over 'a/b/c' parameter paths that get no updates
  prepare(variables, batches)       data-dependent set-up before the first step (e.g. a Deep
                                    SVDD centre from normal training data); default: none
Variables are a dict of Flax collections: 'params' is trained; every other collection
('batch_stats', a centre, ...) is carried in the train state and checkpointed.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Iterable

import jax

Variables = dict[str, Any]


class System(abc.ABC):
  task: ClassVar[str]
  train_fields: ClassVar[tuple[str, ...]]
  predict_fields: ClassVar[tuple[str, ...]]
  mix_field: ClassVar[str | None] = None

  @classmethod
  def data_request(cls, config) -> dict:
    """What the data source must produce for this system (default: nothing special)."""
    del config
    return {}

  @classmethod
  def check_config(cls, config) -> None:
    """Raises ValueError naming the key for values this system cannot run (no devices needed)."""
    del config

  @classmethod
  def examples_per_step(cls, config) -> int:
    """Examples (rows of a training batch) a step, globally."""
    return config.batch_size

  @classmethod
  @abc.abstractmethod
  def from_config(cls, config, info) -> 'System':
    """Builds the system from `config` and the data layer's `DataInfo`."""

  @abc.abstractmethod
  def init(self, rng: jax.Array, spec: dict) -> Variables:
    """Variables from a batch spec {field: jax.ShapeDtypeStruct [B, ...]} (shapes only)."""

  @abc.abstractmethod
  def loss(self, variables: Variables, batch: dict, rng: jax.Array):
    """-> (scalar loss, (metrics {name: scalar}, updates {collection: tree})). Pure, jittable;
    differentiated with respect to variables['params'] only."""

  @abc.abstractmethod
  def predict(self, variables: Variables, batch: dict) -> dict:
    """Inference outputs (schema set by `task`; see vad_jax.evaluate)."""

  def frozen_params(self) -> tuple[str, ...]:
    """Regexes (re.search) over parameter paths 'module/sub/param' that are not trained."""
    return ()

  def definitions(self) -> dict:
    """{key: text} saying how this system's outputs are defined (into metrics.json)."""
    return {}

  def prepare(self, variables: Variables, batches: Iterable[dict]) -> Variables:
    """Data-dependent set-up before the first step, from training batches; default: none."""
    del batches
    return variables
