"""Evaluators by name (`config.evals`): small classes the trainer runs on a split's gathered rows.

`config.evals` maps a name to its keyword arguments, e.g. `{'classification': {'positive_class':
1}}`. An evaluator is built as `cls(config, class_names, **kwargs)` and provides
  check_split(labels, split)             fail before training when a metric would be undefined
  evaluate(rows) -> (results, artifact)  results: JSON-ready {name: value}; top-level numbers are
                                         logged (validation/<name>) and one may be
                                         `config.best_metric`
  definitions(config) -> {key: text}     how the numbers are defined (into metrics.json)
  write(artifact, results, workdir, split, source=None)
                                         per-example files and plots (process 0 only);
                                         `source` is the split's data source (to draw inputs)
  scalars                                the names printed on the console line
  row_fields (optional)                  example fields beyond the default ones the rows must
                                         hold (e.g. a detector's true 'boxes', 'box_valid')
Metric names must be unique across a config's evaluators.
"""

from vad_jax.evaluate.classification import Classification
from vad_jax.evaluate.detection import Detection
from vad_jax.evaluate.frame_anomaly import FrameAnomaly

EVALUATORS = {'frame_anomaly': FrameAnomaly, 'classification': Classification,
              'detection': Detection}


def make(config, class_names) -> dict:
  """{name: evaluator} for `config.evals`, in the config's order."""
  out = {}
  for name, kwargs in config.evals.items():
    if name not in EVALUATORS:
      raise ValueError(f'config.evals.{name}: unknown evaluator; known: {sorted(EVALUATORS)}')
    try:
      out[name] = EVALUATORS[name](config, class_names, **dict(kwargs))
    except TypeError as e:
      raise ValueError(f'config.evals.{name}: {e}') from None
  if not out:
    raise ValueError('config.evals is empty: name at least one evaluator')
  return out
