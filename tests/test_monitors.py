"""Monitors: seed 003's per-class accuracy rules on scripted evaluation sequences."""

import pytest

from vad_jax.train import monitors


def run(gaps, **kwargs):
  """Feeds a sequence of validation gaps; -> [(evaluation number, action, level)] (non-log
  actions and log levels)."""
  m = monitors.ClassGap(**kwargs)
  out = []
  for i, g in enumerate(gaps):
    for d in m(i, {'per_class_gap': g, 'per_class_accuracy': {'NonViolent': 0.9,
                                                                'Violent': 0.9 - g}}):
      out.append((i, d.action, d.level, d.factor))
  return out


def actions(events):
  return [(i, a, f) for i, a, _, f in events if a != 'log']


def test_levels_follow_the_warning_and_critical_thresholds():
  events = run([0.10, 0.16, 0.26, 0.15, 0.25])
  assert [lvl for _, a, lvl, _ in events if a == 'log'] == ['info', 'warning', 'critical', 'info',
                                                           'warning']


def test_five_consecutive_gaps_over_020_halve_the_lr_once_then_count_again():
  assert actions(run([0.21] * 4)) == []
  assert actions(run([0.21] * 5)) == [(4, 'scale_lr', 0.5)]
  # A gap at or below 0.20 resets the count; after halving, five more are needed.
  assert actions(run([0.21] * 4 + [0.20] + [0.21] * 5)) == [(9, 'scale_lr', 0.5)]
  assert actions(run([0.22] * 10)) == [(4, 'scale_lr', 0.5), (9, 'scale_lr', 0.5)]


def test_three_consecutive_gaps_over_030_stop_with_a_recommendation():
  events = run([0.31, 0.35, 0.1, 0.31, 0.32, 0.4])
  assert actions(events) == [(5, 'stop', 1.0)]
  m = monitors.ClassGap()
  for g in (0.5, 0.5):
    m(0, {'per_class_gap': g})
  stop = [d for d in m(2, {'per_class_gap': 0.5}) if d.action == 'stop']
  assert stop and 'architecture' in stop[0].reason and '3 consecutive' in stop[0].reason


def test_stop_takes_precedence_and_state_round_trips():
  m = monitors.ClassGap(lr_patience=2, stop_patience=2)
  m(0, {'per_class_gap': 0.5})
  saved = m.state()
  again = monitors.ClassGap(lr_patience=2, stop_patience=2)
  again.restore(saved)                         # a resumed run continues the same counts
  assert [d.action for d in again(1, {'per_class_gap': 0.5}) if d.action != 'log'] == ['stop']


def test_missing_metric_and_unknown_monitor_are_clear_errors():
  with pytest.raises(KeyError, match="'classification' evaluator"):
    monitors.ClassGap()(0, {'frame_auc': 0.5})
  import ml_collections
  c = ml_collections.ConfigDict({'monitors': {'gap': {}}})
  with pytest.raises(ValueError, match="config.monitors.gap: unknown monitor"):
    monitors.make(c)
  c = ml_collections.ConfigDict({'monitors': {'class_gap': {'patience': 3}}})
  with pytest.raises(ValueError, match="config.monitors.class_gap: .*patience"):
    monitors.make(c)


def test_evaluations_before_start_step_are_logged_not_counted():
  m = monitors.ClassGap(start_step=3)
  acts = [[d.action for d in m(step, {'per_class_gap': 0.9})] for step in range(6)]
  assert acts[:5] == [['log']] * 5                      # steps 0-2 ignored; 3, 4 counted
  assert acts[5] == ['log', 'stop']                     # third counted evaluation
