"""Monitors: the loop's extension point, called after every validation with its metrics.

A monitor returns Decisions; the loop carries them out and records each one (console,
TensorBoard text, `metrics.json` 'monitor_events'):
  log           a message at level 'info' | 'warning' | 'critical'
  scale_lr      multiply the learning rate by `factor` (an optimizer-state hyperparameter: no
                recompilation)
  restore_best  put the best-on-validation weights back into the train state
  stop          end training now, for `reason` (the test split is still scored, with the best
                checkpoint)
Monitors keep their counters in `state()` / `restore(state)`: checkpointed with the run, so a
resumed run continues the same consecutive counts. `config.monitors` maps a registered name to
its keyword arguments.
"""

from __future__ import annotations

import dataclasses

ACTIONS = ('log', 'scale_lr', 'restore_best', 'stop')


@dataclasses.dataclass(frozen=True)
class Decision:
  action: str
  reason: str
  level: str = 'info'
  factor: float = 1.0

  def __post_init__(self):
    if self.action not in ACTIONS:
      raise ValueError(f'unknown monitor action {self.action!r}; known: {ACTIONS}')


class ClassGap:
  """Seed 003's per-class accuracy monitor with automatic recovery.

  Watches `metric` (the classification evaluator's `per_class_gap`: max - min per-class
  accuracy on validation). Every evaluation logs the per-class accuracies; a gap above `warn`
  is a warning, above `critical` a critical message. A gap above `lr_gap` for `lr_patience`
  consecutive evaluations multiplies the learning rate by `lr_factor` (then counts again from
  0); above `stop_gap` for `stop_patience` consecutive evaluations stops the run with the seed's
  recommendation. Defaults are the seed's: 0.15 / 0.25 / 0.20 x5 -> lr x0.5 / 0.30 x3 -> stop.
  Evaluations before `start_step` (e.g. the warmup: at step 0 a network is arbitrary, and the
  seed's own gates look at epoch 10) are logged but neither counted nor acted on.
  """

  def __init__(self, metric: str = 'per_class_gap', per_class: str = 'per_class_accuracy',
               warn: float = 0.15, critical: float = 0.25, lr_gap: float = 0.20,
               lr_patience: int = 5, lr_factor: float = 0.5, stop_gap: float = 0.30,
               stop_patience: int = 3, restore_best_on_lr: bool = False, start_step: int = 0):
    self.metric, self.per_class = metric, per_class
    self.warn, self.critical = warn, critical
    self.lr_gap, self.lr_patience, self.lr_factor = lr_gap, lr_patience, lr_factor
    self.stop_gap, self.stop_patience = stop_gap, stop_patience
    self.restore_best_on_lr = restore_best_on_lr
    self.start_step = start_step
    self.over_lr = 0      # consecutive evaluations with gap > lr_gap (since the last lr change)
    self.over_stop = 0    # consecutive evaluations with gap > stop_gap

  def state(self) -> dict:
    return {'over_lr': self.over_lr, 'over_stop': self.over_stop}

  def restore(self, state: dict) -> None:
    self.over_lr, self.over_stop = int(state['over_lr']), int(state['over_stop'])

  def __call__(self, step: int, metrics: dict) -> list[Decision]:
    if self.metric not in metrics:
      raise KeyError(f'class_gap monitor: validation metrics have no {self.metric!r} (add the '
                     "'classification' evaluator to config.evals)")
    gap = float(metrics[self.metric])
    accs = metrics.get(self.per_class, {})
    shown = ', '.join(f'{n} {a:.3f}' for n, a in accs.items() if a is not None)
    out = []
    if gap > self.critical:
      out.append(Decision('log', f'CRITICAL per-class accuracy gap {gap:.3f} > {self.critical} '
                                 f'({shown})', level='critical'))
    elif gap > self.warn:
      out.append(Decision('log', f'per-class accuracy gap {gap:.3f} > {self.warn} ({shown})',
                          level='warning'))
    else:
      out.append(Decision('log', f'per-class accuracy gap {gap:.3f} ({shown})'))
    if step < self.start_step:
      return out
    self.over_lr = self.over_lr + 1 if gap > self.lr_gap else 0
    self.over_stop = self.over_stop + 1 if gap > self.stop_gap else 0
    if self.over_stop >= self.stop_patience:
      out.append(Decision(
          'stop', f'per-class accuracy gap > {self.stop_gap} for {self.over_stop} consecutive '
                  f'evaluations (now {gap:.3f}: {shown}). The model is collapsing onto one class: '
                  'change the architecture or rebalance the data (seed 003 section 4.2: stop and '
                  'recommend an architecture change)', level='critical'))
    elif self.over_lr >= self.lr_patience:
      if self.restore_best_on_lr:
        out.append(Decision('restore_best', f'gap > {self.lr_gap} for {self.over_lr} evaluations'))
      out.append(Decision('scale_lr', f'per-class accuracy gap > {self.lr_gap} for '
                                      f'{self.over_lr} consecutive evaluations (now {gap:.3f}): '
                                      f'learning rate x{self.lr_factor}',
                          level='warning', factor=self.lr_factor))
      self.over_lr = 0
    return out


class Plateau:
  """ReduceLROnPlateau on a validation metric (PyTorch's semantics) and early stopping.

  After each evaluation `metric` is compared with the best so far: it improves when it beats the
  best by more than `threshold` (relative: best * (1 + threshold) for 'max', best * (1 -
  threshold) for 'min'; absolute when threshold_mode='abs'). More than `patience` evaluations in
  a row without improvement multiply the learning rate by `factor` (then `cooldown` evaluations
  are not counted), as `torch.optim.lr_scheduler.ReduceLROnPlateau`. With `stop_patience` > 0,
  `stop_patience` evaluations in a row without improvement stop the run (early stopping; the
  test split is scored with the best checkpoint). Seed 004: factor 0.5, patience 5, early
  stopping 10. The counters are checkpointed (`state`). Hand-written because
  `optax.contrib.reduce_on_plateau` lives inside the optimizer update and sees the training
  loss every step; this acts between evaluations on a validation metric and also stops.
  """

  def __init__(self, metric: str, mode: str = 'max', factor: float = 0.5, patience: int = 5,
               threshold: float = 1e-4, threshold_mode: str = 'rel', cooldown: int = 0,
               min_lr_multiplier: float = 0.0, stop_patience: int = 0):
    if mode not in ('max', 'min') or threshold_mode not in ('rel', 'abs'):
      raise ValueError(f"mode={mode!r} must be 'max' or 'min', threshold_mode={threshold_mode!r} "
                       "'rel' or 'abs'")
    if not 0 < factor < 1 or patience < 0 or cooldown < 0 or stop_patience < 0:
      raise ValueError(f'factor={factor} must be in (0, 1); patience={patience}, cooldown='
                       f'{cooldown}, stop_patience={stop_patience} >= 0')
    self.metric, self.mode, self.factor, self.patience = metric, mode, factor, patience
    self.threshold, self.threshold_mode, self.cooldown = threshold, threshold_mode, cooldown
    self.min_lr_multiplier, self.stop_patience = min_lr_multiplier, stop_patience
    self.best = None          # best value so far
    self.bad = 0              # evaluations without improvement (the LR counter)
    self.cooldown_left = 0
    self.since_best = 0       # evaluations without improvement (the early-stopping counter)
    self.multiplier = 1.0     # the learning-rate multiplier this monitor has set

  def state(self) -> dict:
    return {'best': self.best, 'bad': self.bad, 'cooldown_left': self.cooldown_left,
            'since_best': self.since_best, 'multiplier': self.multiplier}

  def restore(self, state: dict) -> None:
    self.best = None if state['best'] is None else float(state['best'])
    self.bad, self.cooldown_left = int(state['bad']), int(state['cooldown_left'])
    self.since_best, self.multiplier = int(state['since_best']), float(state['multiplier'])

  def improves(self, value: float) -> bool:
    if self.best is None:
      return True
    sign = 1.0 if self.mode == 'max' else -1.0
    if self.threshold_mode == 'rel':
      return sign * value > sign * self.best * (1.0 + sign * self.threshold)
    return sign * value > sign * self.best + self.threshold

  def __call__(self, step: int, metrics: dict) -> list[Decision]:
    if self.metric not in metrics:
      raise KeyError(f'plateau monitor: validation metrics have no {self.metric!r} '
                     f'(known: {sorted(metrics)})')
    value = float(metrics[self.metric])
    out = []
    if self.improves(value):
      self.best, self.bad, self.since_best = value, 0, 0
    else:
      self.bad += 1
      self.since_best += 1
    if self.cooldown_left > 0:
      self.cooldown_left -= 1
      self.bad = 0
    if self.bad > self.patience:
      new = self.multiplier * self.factor
      if new >= self.min_lr_multiplier:
        self.multiplier = new
        out.append(Decision('scale_lr', f'{self.metric} {value:.4f} has not improved on '
                                        f'{self.best:.4f} for {self.bad} evaluations: learning '
                                        f'rate x{self.factor} (now x{new:g})', factor=self.factor))
      self.cooldown_left, self.bad = self.cooldown, 0
    if self.stop_patience and self.since_best >= self.stop_patience:
      out.append(Decision('stop', f'early stopping: {self.metric} has not improved on '
                                  f'{self.best:.4f} for {self.since_best} evaluations'))
    return out


MONITORS = {'class_gap': ClassGap, 'plateau': Plateau}


def make(config) -> dict:
  """{name: monitor} for `config.monitors` ({} when absent)."""
  out = {}
  for name, kwargs in config.get('monitors', {}).items():
    if name not in MONITORS:
      raise ValueError(f'config.monitors.{name}: unknown monitor; known: {sorted(MONITORS)}')
    try:
      out[name] = MONITORS[name](**dict(kwargs))
    except TypeError as e:
      raise ValueError(f'config.monitors.{name}: {e}') from None
  return out
