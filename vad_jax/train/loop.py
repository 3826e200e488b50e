"""train_and_evaluate: the one training loop every system shares.

mesh -> data sources (by name) -> system (by name, built from what the data reports) -> state
(resumed if the workdir has a checkpoint, else the system's `prepare`) -> jitted steps, with
periodic logs, validation by the configured evaluators (best checkpoint on
`config.best_metric`), monitors and checkpoints -> the test split scored once, with the best
checkpoint: metrics.json plus each evaluator's files. This module names no system, model,
dataset or metric.
"""

from __future__ import annotations

import json
import time

import jax
import numpy as np
from absl import logging
from clu import parameter_overview

from vad_jax import mesh as mesh_lib
from vad_jax import storage
from vad_jax import systems
from vad_jax.data import pipeline, sources, views
from vad_jax.data.source import DataInfo
from vad_jax.evaluate import evaluators as evaluators_lib
from vad_jax.evaluate import runner, tta
from vad_jax.train import checkpoint, logbook, optim, preemption, swa, trained
from vad_jax.train import monitors as monitors_lib
from vad_jax.train import step as step_lib


class AcceleratorRequired(RuntimeError):
  pass


def check_accelerator(config) -> None:
  """Refuses, before anything is compiled, to run an accelerator-sized config on a CPU."""
  if config.get('requires_accelerator', False) and jax.default_backend() == 'cpu':
    name = config.get('name', config.system)
    raise AcceleratorRequired(
        f'this config (configs/{name}.py, variant {config.get("variant", "?")}) is sized for a '
        f'GPU/TPU, and JAX sees only a CPU here: one step would take minutes. For a CPU run use '
        f'--config=configs/{name}.py:local; to run this size anyway pass '
        '--config.requires_accelerator=False.')


def check_config(config) -> None:
  """Value checks that need no devices or data; raises ValueError naming the offending keys."""
  system_cls = systems.get(config.system)
  tta.parse(config.get('eval_tta', ''))
  views.parse(config.data.get('augment', ''), 'data.augment')
  pipeline.check_window(config)
  optim.check(config.optim)
  if config.best_mode not in ('max', 'min'):
    raise ValueError(f"best_mode={config.best_mode!r}; expected 'max' or 'min'")
  for name in config.evals:
    if name not in evaluators_lib.EVALUATORS:
      raise ValueError(f'config.evals.{name}: unknown evaluator; known: '
                       f'{sorted(evaluators_lib.EVALUATORS)}')
  monitors_lib.make(config)
  if step_lib.swa_enabled(config):
    if config.ema_decay > 0:
      raise ValueError('ema_decay > 0 and swa.start_step > 0: both average the weights in one '
                       'slot; choose one')
    if config.swa.every < 1 or config.swa.stat_batches < 1:
      raise ValueError(f'swa.every={config.swa.every} and swa.stat_batches='
                       f'{config.swa.stat_batches} must be >= 1')
    if config.swa.start_step > config.num_steps:
      raise ValueError(f'swa.start_step={config.swa.start_step} is after the last step '
                       f'(num_steps={config.num_steps}): nothing would be averaged')
  if step_lib.mixup_enabled(config):
    m = config.mixup
    if m.mixup_alpha < 0 or m.cutmix_alpha < 0 or not 0 <= m.switch_prob <= 1 or m.prob > 1:
      raise ValueError(f'mixup: alphas must be >= 0 and probabilities in [0, 1], got {dict(m)}')
    if not getattr(system_cls, 'mix_field', None):
      raise ValueError(f'mixup is on (mixup.mixup_alpha / cutmix_alpha > 0) but the system '
                       f'{config.system!r} does not read mixed batches; set them to 0')
  if config.data.get('sampling_power', 0.0) < 0:
    raise ValueError(f'data.sampling_power={config.data.sampling_power} must be >= 0')
  if config.data.source not in sources.SOURCES:
    raise ValueError(f'config.data.source={config.data.source!r}; known sources: '
                     f'{sorted(sources.SOURCES)}')
  for key in ('num_steps', 'batch_size', 'eval_batch_size', 'log_every', 'eval_every',
              'checkpoint_every'):
    if config[key] < 1:
      raise ValueError(f'{key}={config[key]} must be >= 1')
  system_cls.check_config(config)


def examples_per_step(config, system_cls, mesh) -> int:
  n = system_cls.examples_per_step(config)
  if n % mesh_lib.data_parallelism(mesh):
    raise ValueError(f"{n} examples a step do not split over the mesh's data axis of "
                     f'{mesh_lib.data_parallelism(mesh)} devices')
  return n


def eval_examples_per_step(config, mesh) -> int:
  n = mesh_lib.data_parallelism(mesh)
  return -(-config.eval_batch_size // n) * n


def evaluate(config, evals: dict, predict, state, mesh, source, fields) -> tuple[dict, dict]:
  """Every evaluator on one pass of `predict` over `source` -> (results, artifacts by name)."""
  extra = tuple(dict.fromkeys(f for e in evals.values() for f in getattr(e, 'row_fields', ())))
  batches = pipeline.eval_batches(config, source, fields, eval_examples_per_step(config, mesh),
                                  extra)
  rows = runner.predict_split(predict, state, batches, mesh, fields)
  results, artifacts = {}, {}
  for name, evaluator in evals.items():
    res, artifacts[name] = evaluator.evaluate(rows)
    clash = sorted(set(res) & set(results))
    if clash:
      raise ValueError(f'evaluator {name!r} reports {clash}, already reported by another')
    results.update(res)
  return results, artifacts


def _scalars(results: dict) -> dict:
  return {k: float(v) for k, v in results.items()
          if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)}


class _Record:
  """Monitor decisions and the stop flag: logged, checkpointed, written to metrics.json."""

  def __init__(self, monitors: dict):
    self.monitors = monitors
    self.events: list[dict] = []
    self.stopped: str | None = None

  def to_json(self) -> dict:
    return {'events': self.events, 'stopped': self.stopped,
            'monitors': {n: m.state() for n, m in self.monitors.items()}}

  def load(self, saved: dict) -> None:
    self.events = list(saved.get('events', []))
    self.stopped = saved.get('stopped')
    for name, state in saved.get('monitors', {}).items():
      if name in self.monitors:
        self.monitors[name].restore(state)


def _apply_decisions(step, results, record, state, ckpts, book):
  """Runs every monitor on the validation `results`; carries out and records their decisions."""
  levels = {'info': logging.INFO, 'warning': logging.WARNING, 'critical': logging.ERROR}
  for name, monitor in record.monitors.items():
    for d in monitor(step, results):
      logging.log(levels.get(d.level, logging.INFO), 'monitor %s @%d: %s%s', name, step,
                  '' if d.action == 'log' else f'[{d.action}] ', d.reason)
      if d.action == 'scale_lr':
        state = state.replace(opt_state=optim.scale_lr(state.opt_state, d.factor))
        book.scalars(step, {'lr_multiplier': float(optim.lr_multiplier(state.opt_state))},
                     'monitor')
      elif d.action == 'restore_best':
        if ckpts.best.best_step() is not None:
          _, best = ckpts.restore_best(state)
          state = state.replace(params=best.params, model_state=best.model_state, ema=best.ema)
      elif d.action == 'stop':
        record.stopped = d.reason
      event = {'step': int(step), 'monitor': name, 'action': d.action, 'level': d.level,
               'reason': d.reason}
      if d.action == 'scale_lr':
        event['factor'] = d.factor
      record.events.append(event)
      book.text(step, f'monitor/{name}', f'[{d.action}] {d.reason}')
  return state


def build(config):
  """Sources, system and evaluators of `config` -> (system, {split: source}, DataInfo, evals).
  The system is built from what the training source reports."""
  system_cls = systems.get(config.system)
  request = system_cls.data_request(config)
  srcs = sources.make_splits(config, request)
  spec = pipeline.element_spec(config, srcs['train'], system_cls.train_fields)
  train = srcs['train']
  counts = (np.asarray(train.class_counts(), np.int64) if hasattr(train, 'class_counts') else
            np.bincount(train.labels(), minlength=len(train.class_names)))
  info = DataInfo(tuple(srcs['train'].class_names), counts, spec)
  evals = evaluators_lib.make(config, info.class_names)
  for split in ('validation', 'test'):
    for evaluator in evals.values():
      evaluator.check_split(srcs[split].labels(), split)
  logging.info('data %r: %d train / %d validation / %d test examples; train class counts %s; '
               'example %s', config.data.source, len(srcs['train']), len(srcs['validation']),
               len(srcs['test']), dict(zip(info.class_names, counts.tolist())),
               {k: (v.shape, str(v.dtype)) for k, v in spec.items()})
  return system_cls.from_config(config, info), srcs, info, evals


def init_state(config, system, info, mesh):
  """The initial train state (replicated over `mesh`), from the data's element spec."""
  batch = examples_per_step(config, type(system), mesh)
  tx_fn = lambda params: optim.make(config.optim, params, system.frozen_params(), config.num_steps)
  return step_lib.init_state(config, system, mesh, pipeline.batch_spec(info.element_spec, batch),
                             tx_fn)


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint); returns the test metrics,
  or {'preempted_at_step', 'num_steps'} when a SIGTERM stopped training (vad_jax.train.preemption:
  a checkpoint at that step on every host; rerun to resume)."""
  check_accelerator(config)
  check_config(config)
  mesh = mesh_lib.make_mesh(config.mesh)
  logging.info('JAX %s on %d %s device(s), %d process(es); mesh %s', jax.__version__,
               jax.device_count(), jax.default_backend(), jax.process_count(), dict(mesh.shape))

  system, srcs, info, evals = build(config)
  workdir = storage.resolve(workdir)
  storage.makedirs(workdir)
  if jax.process_index() == 0:
    storage.write_json(storage.join(workdir, 'config.json'),
                       json.loads(config.to_json_best_effort()))
    trained.save_info(workdir, info)
  batch = examples_per_step(config, type(system), mesh)
  state = init_state(config, system, info, mesh)
  sizes = {k: parameter_overview.count_parameters(v) for k, v in state.params.items()}
  logging.info('parameters: %s, total %s', ', '.join(f'{k} {n:,}' for k, n in sizes.items()),
               f'{sum(sizes.values()):,}')

  train_iter = pipeline.train_iterator(config, srcs['train'], system.train_fields, batch,
                                      config.seed, mesh_lib.process_rows(mesh, batch))
  ckpts = checkpoint.Checkpoints(workdir, config.keep_checkpoints, config.best_metric,
                                 config.best_mode)
  record = _Record(monitors_lib.make(config))
  if ckpts.latest_step() is not None:
    state, saved = ckpts.restore(state, train_iter)
    record.load(saved)
    logging.info('resumed from %s at step %d', ckpts.last.directory, int(state.step))
  else:
    state = _prepare(config, system, state, srcs['train'], mesh)
  start = int(state.step)
  best = ckpts.best_value()

  train_step = step_lib.make_train_step(system, mesh, config.seed,
                                        optim.schedule(config.optim, config.num_steps),
                                        config.ema_decay, **step_lib.tricks(config))
  averaged_stats = _swa_refresher(config, system, srcs['train'], mesh, batch)
  predict = step_lib.make_predict_step(system, mesh, tta.parse(config.get('eval_tta', '')))
  book = logbook.Logbook(workdir, config.num_steps, start)
  pending, t_start, done = [], time.perf_counter(), start
  preempt, preempted = preemption.Preemption(), False
  if record.stopped:
    logging.warning('this run was stopped at step %d by a monitor: %s', start, record.stopped)
  for step in range(start, config.num_steps if not record.stopped else start):
    batch_arrays = mesh_lib.to_global(next(train_iter), mesh)
    state, metrics = train_step(state, batch_arrays)
    pending.append(metrics)
    done = step + 1
    if step == start:
      jax.block_until_ready(metrics)
      logging.info('first step (compile included) took %.1fs', time.perf_counter() - t_start)
    if done % config.log_every == 0 or done == config.num_steps:
      book.train(done, jax.tree.map(lambda *x: np.mean(x), *jax.device_get(pending)))
      pending = []
    if done % config.eval_every == 0 or done == config.num_steps:
      state = averaged_stats(state)
      val, val_artifacts = evaluate(config, evals, predict, state, mesh, srcs['validation'],
                                    system.predict_fields)
      scalars = _scalars(val)
      book.scalars(done, scalars, 'validation')
      shown = [k for e in evals.values() for k in e.scalars if k in scalars]
      logging.info('validation @%d: %s', done, '  '.join(f'{k} {scalars[k]:.4f}' for k in shown))
      if config.best_metric not in scalars:
        raise ValueError(f'best_metric={config.best_metric!r} is not reported by config.evals '
                         f'({sorted(scalars)})')
      if ckpts.is_better(scalars[config.best_metric], best):
        best = scalars[config.best_metric]
        ckpts.save_best(done, state, best)
        if jax.process_index() == 0:     # the best checkpoint's validation outputs (e.g. the
          for name, evaluator in evals.items():    # alert threshold commands read)
            evaluator.write(val_artifacts[name], val, workdir, 'validation',
                            source=srcs['validation'])
      state = _apply_decisions(done, val, record, state, ckpts, book)
    saving = done % config.checkpoint_every == 0 or done == config.num_steps or record.stopped
    preempted = done < config.num_steps and preempt.reached(done)
    if saving or preempted:
      ckpts.save(done, state, train_iter, record.to_json())
    if record.stopped:
      logging.warning('stopping at step %d: %s', done, record.stopped)
      break
    if preempted:
      break
  preempt.close()
  ckpts.wait()
  book.close()
  if preempted:
    ckpts.close()
    logging.warning('preempted (SIGTERM): checkpoint saved at step %d of %d; run the same command '
                    'again to resume', done, config.num_steps)
    return {'preempted_at_step': int(done), 'num_steps': int(config.num_steps)}
  if start >= config.num_steps:
    logging.info('training already complete (step %d); evaluating the best checkpoint', start)
  return final_test(config, workdir, system, evals, mesh, predict, ckpts, state, info, record,
                    srcs['test'], max(done, start))


def _swa_refresher(config, system, train_src, mesh, batch: int):
  """state -> state with the averaged weights' statistics recomputed (vad_jax.train.swa) on
  `swa.stat_batches` training batches drawn by an iterator of their own (the training stream is
  not disturbed): always for SWA, for EMA when `ema_recompute_stats`; else the identity."""
  if not (step_lib.swa_enabled(config) or
          (config.ema_decay > 0 and config.get('ema_recompute_stats', False))):
    return lambda state: state
  stats_fn = swa.make_batch_statistics(system, mesh, config.seed)

  def refresh(state):
    it = pipeline.train_iterator(config, train_src, system.train_fields, batch,
                                 config.seed + 7919, mesh_lib.process_rows(mesh, batch))
    batches = (next(it) for _ in range(config.swa.stat_batches))
    return swa.refresh(state, stats_fn, batches, mesh)
  return refresh


def _prepare(config, system, state, train_src, mesh):
  """The system's data-dependent set-up of a fresh run (e.g. pretrained weights, a centre)."""
  eval_batch = eval_examples_per_step(config, mesh)
  batches = (b for b in pipeline.eval_batches(config, train_src, system.train_fields, eval_batch))
  before = jax.device_get(state.variables())
  after = system.prepare(before, batches)
  if after is before:
    return state
  put = lambda t: jax.device_put(t, mesh_lib.replicated(mesh))
  params = put(after['params'])
  model_state = put({k: v for k, v in after.items() if k != 'params'})
  # The average starts from the prepared variables, in buffers of its own (the step donates both).
  ema = None if state.ema is None else dict(
      state.ema, params=put(after['params']),
      model_state=put({k: v for k, v in after.items() if k != 'params'}))
  return state.replace(params=params, model_state=model_state, ema=ema)


def final_test(config, workdir, system, evals, mesh, predict, ckpts, state, info, record,
               test_src, steps_trained: int) -> dict:
  """Scores the test split once with the best-on-validation checkpoint; writes the outputs."""
  best_step, state = ckpts.restore_best(state)
  t0 = time.perf_counter()
  results, artifacts = evaluate(config, evals, predict, state, mesh, test_src,
                                system.predict_fields)
  scalars = _scalars(results)
  results.update(
      split='test', checkpoint_step=int(best_step), best_metric=config.best_metric,
      **{f'validation_{config.best_metric}': ckpts.best_value()},
      num_steps=int(config.num_steps), steps_trained=int(steps_trained),
      train_class_counts=dict(zip(info.class_names, [int(c) for c in info.class_counts])),
      monitor_events=record.events, stopped_early=record.stopped)
  for evaluator in evals.values():
    results.update(evaluator.definitions(config))
  results.update(system.definitions())
  if config.get('eval_tta'):
    results['eval_tta'] = (f'predictions averaged over the input and its views '
                           f'{config.eval_tta!r} (vad_jax.evaluate.tta)')
  shown = [k for e in evals.values() for k in e.scalars if k in scalars]
  logging.info('test (checkpoint %d, %.1fs): %s', best_step, time.perf_counter() - t0,
               '  '.join(f'{k} {scalars[k]:.4f}' for k in shown))
  if jax.process_index() == 0:
    for name, evaluator in evals.items():
      evaluator.write(artifacts[name], results, workdir, 'test', source=test_src)
    storage.write_json(storage.join(workdir, 'metrics.json'), results)
  ckpts.close()
  return results

