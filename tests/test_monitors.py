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


def plateau_run(values, monitor=None, **kwargs):
  m = monitor or monitors.Plateau('map50', **kwargs)
  return [(i, d.action, d.factor) for i, v in enumerate(values) for d in m(i, {'map50': v})
          if d.action != 'log']


def test_plateau_reduces_after_more_than_patience_bad_evaluations_like_torch():
  # PyTorch ReduceLROnPlateau(mode='max', factor=0.5, patience=2, threshold=1e-4): evaluations
  # 2, 3, 4 do not improve (0.20001 is inside the relative threshold of 0.2), so the LR halves
  # after the third (num_bad_epochs 3 > patience 2); the counter restarts, 6, 7, 8 -> again.
  values = [0.1, 0.2, 0.20001, 0.2, 0.19, 0.3, 0.3, 0.29, 0.3]
  assert plateau_run(values, patience=2) == [(4, 'scale_lr', 0.5), (8, 'scale_lr', 0.5)]
  # an absolute threshold of 0.05: 0.2 -> 0.24 is no improvement either
  assert plateau_run([0.2, 0.24, 0.24, 0.24], patience=2, threshold=0.05,
                     threshold_mode='abs') == [(3, 'scale_lr', 0.5)]


def test_plateau_cooldown_and_min_mode():
  # cooldown 2: the two evaluations after a reduction are not counted
  values = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
  assert plateau_run(values, patience=1, cooldown=2) == [(2, 'scale_lr', 0.5),
                                                         (6, 'scale_lr', 0.5)]
  # mode min (a loss): improving while it falls
  assert plateau_run([3.0, 2.0, 1.0, 1.5, 1.2, 0.5], mode='min', patience=1) == [
      (4, 'scale_lr', 0.5)]


def test_plateau_early_stopping_and_resume():
  values = [0.1, 0.2, 0.1, 0.15, 0.2, 0.19, 0.3]
  assert plateau_run(values, patience=5, stop_patience=3)[0] == (4, 'stop', 1.0)
  # a monitor restored from another's state continues the same counts
  a = monitors.Plateau('map50', patience=1, stop_patience=3)
  head = plateau_run(values[:3], a)
  b = monitors.Plateau('map50', patience=1, stop_patience=3)
  b.restore(a.state())
  tail = [(i + 3, act, f) for i, act, f in plateau_run(values[3:], b)]
  assert head + tail == plateau_run(values, patience=1, stop_patience=3)
  with pytest.raises(KeyError, match='map50'):
    monitors.Plateau('map50')(0, {'map': 0.1})
  with pytest.raises(ValueError, match='factor'):
    monitors.Plateau('map50', factor=1.5)
