"""The alert threshold `python -m vad_jax.score` uses: chosen on the validation split by the
evaluators that score frames (`frame_anomaly`; `classification` with a normal class) and written
as <workdir>/alert_threshold.json with the best checkpoint's validation outputs."""

import numpy as np

from vad_jax import storage

FILE = 'alert_threshold.json'


def check_rate(false_alarm_rate: float) -> float:
  if not 0 < false_alarm_rate < 1:
    raise ValueError(f'alert_false_alarm_rate={false_alarm_rate} must be in (0, 1)')
  return float(false_alarm_rate)


def threshold(normal_scores: np.ndarray, false_alarm_rate: float, scores: str,
              unit: str = 'frames') -> dict:
  """The score above which `false_alarm_rate` of `normal_scores` [N] (the anomaly scores of the
  validation split's normal frames) lie, with its definition (`scores`: what they are, e.g.
  'frame scores of the validation frames labelled normal'), JSON-ready."""
  normal = np.asarray(normal_scores, np.float64)
  if not len(normal):
    return {'threshold': None, 'reason': 'no normal frame in the validation split'}
  far = false_alarm_rate
  return {'threshold': float(np.quantile(normal, 1.0 - far)),
          'false_alarm_rate': far, 'normal_frames': int(len(normal)),
          'definition': f'the {1 - far:.3g} quantile of the {scores} (the best checkpoint): '
                        f'{far:.3g} of normal {unit} score above it'}


def write(workdir: str, info: dict) -> None:
  """Writes `info` (from `threshold`) as <workdir>/alert_threshold.json (vad_jax.storage)."""
  storage.write_json(storage.join(workdir, FILE), info)


def read(workdir: str) -> dict | None:
  """<workdir>/alert_threshold.json, or None when the run has none."""
  path = storage.join(workdir, FILE)
  return storage.read_json(path) if storage.exists(path) else None
