"""train_and_evaluate: the one training loop every system shares.

mesh -> data -> system -> state (resumed if the workdir has a checkpoint) -> jitted steps, with
periodic logs, validation (best checkpoint on the validation frame AUC) and checkpoints -> the
test split scored once, with the best checkpoint: metrics.json, per-frame scores, plots.
"""

import json
import os
import time

import jax
import numpy as np
from absl import logging
from clu import parameter_overview

from vad_jax import systems
from vad_jax.data import pipeline, views
from vad_jax.data.classes import NUM_CLASSES
from vad_jax.evaluate import plots, report, scoring, tta
from vad_jax.models import inputs
from vad_jax.train import checkpoint, logbook, pretrained, step as step_lib
from vad_jax.train import mesh as mesh_lib
from vad_jax.train.state import learning_rate

BEST_METRIC = 'frame_auc'


class AcceleratorRequired(RuntimeError):
  pass


def check_accelerator(config) -> None:
  """Refuses, before anything is compiled, to run an accelerator-sized config on a CPU."""
  if config.get('requires_accelerator', False) and jax.default_backend() == 'cpu':
    raise AcceleratorRequired(
        f'this config ({config.get("variant", "?")}: {config.data.height}x{config.data.width}, '
        f'{config.data.clip_len}-frame clips, {config.batch_size} clips a step) is sized for a '
        'GPU/TPU, and JAX sees only a CPU here: one step would take minutes. For a CPU run use '
        '--config=configs/hybrid.py:local; to run this size anyway pass '
        '--config.requires_accelerator=False.')


def check_config(config) -> None:
  """Value checks that need no devices; raises ValueError naming the offending keys."""
  d, m = config.data, config.model
  if m.get('input', 'rgb') not in inputs.CHANNELS:
    raise ValueError(f'model.input={m.input!r} must be one of {sorted(inputs.CHANNELS)}')
  if m.get('trunk') and m.trunk.get('weights') and m.get('input', 'rgb') != 'rgb':
    raise ValueError(f'model.trunk.weights (ImageNet RGB weights) need model.input=rgb, '
                     f'not {m.input!r}')
  tta.parse(config.get('eval_tta', ''))
  views.parse(d.get('augment', ''), 'data.augment')
  if d.get('min_event_px', 0.0) < 0:
    raise ValueError(f'data.min_event_px={d.min_event_px} must be >= 0 (0: no size floor)')
  if not 0 < d.eval_stride <= d.clip_len:
    raise ValueError(f'data.eval_stride={d.eval_stride} must be in [1, data.clip_len={d.clip_len}]')
  if config.batch_size % d.clips_per_video:
    raise ValueError(f'batch_size={config.batch_size} clips is not a multiple of '
                     f'data.clips_per_video={d.clips_per_video}')


def videos_per_step(config, mesh) -> int:
  videos = config.batch_size // config.data.clips_per_video
  if videos % mesh_lib.data_parallelism(mesh):
    raise ValueError(f'{videos} videos a step (batch_size / clips_per_video) do not split over '
                     f"the mesh's data axis of {mesh_lib.data_parallelism(mesh)} devices")
  return videos


def eval_videos_per_step(config, mesh) -> int:
  n = mesh_lib.data_parallelism(mesh)
  return -(-config.eval_batch_videos // n) * n


def evaluate_split(config, system_predict, state, mesh, source) -> scoring.SplitScores:
  batches = pipeline.eval_batches(config, source, eval_videos_per_step(config, mesh))
  return scoring.score_split(system_predict, state, batches, mesh, config.data.clip_len,
                             config.data.eval_stride)


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint); returns the test metrics."""
  check_accelerator(config)
  check_config(config)
  os.makedirs(workdir, exist_ok=True)
  mesh = mesh_lib.make_mesh(config.mesh)
  logging.info('JAX %s on %d %s device(s), %d process(es); mesh %s', jax.__version__,
               jax.device_count(), jax.default_backend(), jax.process_count(), dict(mesh.shape))
  if jax.process_index() == 0:
    _write_json(os.path.join(workdir, 'config.json'), json.loads(config.to_json_best_effort()))

  system_cls = systems.get(config.system)
  train_src = pipeline.make_source(config, 'train', system_cls.train_frames(config))
  val_src = pipeline.make_source(config, 'validation', 0)
  counts = np.bincount(train_src.labels(), minlength=NUM_CLASSES)
  _check_split(val_src, 'validation')
  _check_split(pipeline.make_source(config, 'test', 0), 'test')
  system = system_cls.from_config(config, counts)

  videos = videos_per_step(config, mesh)
  video_shape = (videos, system_cls.train_frames(config), config.data.height, config.data.width, 3)
  state = step_lib.init_state(config, system, mesh, video_shape)
  sizes = {k: parameter_overview.count_parameters(v) for k, v in state.params.items()}
  logging.info('parameters: %s, total %s', ', '.join(f'{k} {n:,}' for k, n in sizes.items()),
               f'{sum(sizes.values()):,}')

  train_iter = pipeline.train_iterator(config, train_src, videos, config.seed)
  ckpts = checkpoint.Checkpoints(workdir, config.keep_checkpoints, BEST_METRIC)
  if ckpts.latest_step() is not None:
    state = ckpts.restore(state, train_iter)
    logging.info('resumed from %s at step %d', ckpts.last.directory, int(state.step))
  elif config.model.trunk.get('weights'):
    params, stats = pretrained.load_trunk(config, jax.device_get(state.params),
                                          jax.device_get(state.batch_stats))
    state = state.replace(**jax.device_put({'params': params, 'batch_stats': stats},
                                           mesh_lib.replicated(mesh)))
    logging.info('trunk initialised from %s', config.model.trunk.weights)
  start = int(state.step)
  best = ckpts.best_value()

  train_step = step_lib.make_train_step(system, mesh, config.seed, learning_rate(config),
                                        config.ema_decay)
  predict = step_lib.make_predict_step(system, mesh, tta.parse(config.eval_tta))
  book = logbook.Logbook(workdir, config.num_steps, start)
  pending, t_start = [], time.perf_counter()
  for step in range(start, config.num_steps):
    batch = mesh_lib.to_global(next(train_iter), mesh)
    state, metrics = train_step(state, batch)
    pending.append(metrics)
    done = step + 1
    if step == start:
      jax.block_until_ready(metrics)
      logging.info('first step (compile included) took %.1fs', time.perf_counter() - t_start)
    if done % config.log_every == 0 or done == config.num_steps:
      book.train(done, jax.tree.map(lambda *x: np.mean(x), *jax.device_get(pending)))
      pending = []
    if done % config.eval_every == 0 or done == config.num_steps:
      val = report.summarize(evaluate_split(config, predict, state, mesh, val_src))
      book.scalars(done, {k: val[k] for k in ('frame_auc', 'frame_ap', 'clip_accuracy')},
                   'validation')
      logging.info('validation @%d: frame AUC %.4f  AP %.4f  clip acc %.3f', done,
                   val['frame_auc'], val['frame_ap'], val['clip_accuracy'])
      if best is None or val[BEST_METRIC] > best:
        best = val[BEST_METRIC]
        ckpts.save_best(done, state, best)
    if done % config.checkpoint_every == 0 or done == config.num_steps:
      ckpts.save(done, state, train_iter)
  ckpts.wait()
  book.close()
  if start >= config.num_steps:
    logging.info('training already complete (step %d); evaluating the best checkpoint', start)
  return final_test(config, workdir, system, mesh, predict, ckpts, state, counts)


def final_test(config, workdir, system, mesh, predict, ckpts, state, counts) -> dict:
  """Scores the test split once with the best-on-validation checkpoint; writes the outputs."""
  best_step, state = ckpts.restore_best(state)
  test_src = pipeline.make_source(config, 'test', 0)
  t0 = time.perf_counter()
  scores = evaluate_split(config, predict, state, mesh, test_src)
  results = report.summarize(scores)
  results.update(split='test', checkpoint_step=int(best_step),
                 validation_frame_auc=ckpts.best_value(), num_steps=int(config.num_steps),
                 train_class_counts=[int(c) for c in counts],
                 ap_definition='sklearn average_precision_score (step-wise, no interpolation)',
                 score_definition=f'1 - p(Normal) of the 14-class head per clip; clips of '
                                  f'{config.data.clip_len} frames start every '
                                  f'{config.data.eval_stride} frames; a frame scores the mean '
                                  'over the clips containing it'
                                  + (f'; class probabilities averaged over the video and its '
                                     f'views {config.eval_tta!r}' if config.eval_tta else ''))
  logging.info('test (checkpoint %d, %.1fs): frame AUC %.4f  AP %.4f  clip acc %.3f', best_step,
               time.perf_counter() - t0, results['frame_auc'], results['frame_ap'],
               results['clip_accuracy'])
  if jax.process_index() == 0:
    scores.save(os.path.join(workdir, 'scores_test.npz'))
    plots.plot_scores(scores, os.path.join(workdir, 'test_scores.png'), config.num_plot_videos)
    plots.plot_confusion(np.array(results['clip_confusion_matrix']),
                         os.path.join(workdir, 'test_confusion.png'))
    _write_json(os.path.join(workdir, 'metrics.json'), results)
  ckpts.close()
  return results


def _check_split(source, split: str) -> None:
  """Frame AUC needs normal and anomalous videos: fail before training, not after."""
  labels = source.labels()
  if labels.min() == labels.max():
    raise ValueError(f'the {split} split ({len(labels)} videos) holds only class {labels[0]}: '
                     'frame AUC is undefined; give it more videos (config.data.num_{split})')


def _write_json(path: str, obj) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)
