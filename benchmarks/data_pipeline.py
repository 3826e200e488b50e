"""Real-data throughput: preparation (decode + write) and the input pipeline against the step.

  python benchmarks/data_pipeline.py [--videos_per_class=4] [--frames=300] [--workers=2]

1. Writes a UCF-Crime-layout tree of MP4s at the dataset's own format (320x240, 30 fps,
   H.264; content from the built-in renderer) in a temporary folder.
2. Prepares it as `configs/hybrid.py:ucf_crime_local` reads it (10 fps, 32x32): decode
   throughput (source frames/s, videos/s) with --workers processes, and the ArrayRecord write.
3. Times the training input pipeline of that config (batches/s, JPEG decode in grain threads)
   and its jitted train step on the same machine, and prints their ratio: the pipeline must
   produce batches at least 3x as fast as the step consumes them.
"""

import os
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_VIDEOS = flags.DEFINE_integer('videos_per_class', 4, 'videos per class and split')
_FRAMES = flags.DEFINE_integer('frames', 300, 'source frames a video (30 fps)')
_WORKERS = flags.DEFINE_integer('workers', os.cpu_count() or 1, 'decoding processes')
_BATCHES = flags.DEFINE_integer('batches', 40, 'pipeline batches timed')
_STEPS = flags.DEFINE_integer('steps', 10, 'train steps timed')


def main(argv):
  del argv
  import jax
  from configs import hybrid
  from tests import fixtures
  from vad_jax import mesh as mesh_lib
  from vad_jax.data import pipeline, sources
  from vad_jax.prepare import builder
  from vad_jax.train import loop, optim, step as step_lib

  tmp = tempfile.mkdtemp(prefix='vad_bench_')
  raw, out = os.path.join(tmp, 'raw'), os.path.join(tmp, 'prepared')
  per_class = {c: _VIDEOS.value for c in ('Normal', 'Fighting', 'Explosion', 'Stealing')}
  t0 = time.perf_counter()
  tree = fixtures.ucf_crime_tree(raw, videos_per_class=per_class, num_frames=_FRAMES.value,
                                 size=(240, 320), fps=30.0)
  n_videos = len(tree['names']) if 'names' in tree else None
  print(f'fixture: {n_videos} MP4s of {_FRAMES.value} frames at 320x240 written in '
        f'{time.perf_counter() - t0:.1f} s')

  config = hybrid.get_config('ucf_crime_local')
  config.data.data_dir = out
  spec = sources.prepare_spec(config)
  items = __import__('vad_jax.prepare.raw', fromlist=['raw']).DATASETS['ucf_crime'][0](
      raw, val_fraction=spec.val_fraction, seed=spec.seed)
  work = builder.work_dir(out, spec)
  stats = builder.decode_all(items, spec, work, _WORKERS.value, progress=False)
  src_frames = len(items) * _FRAMES.value
  print(f'decode ({_WORKERS.value} processes): {len(items)} videos in {stats["seconds"]:.1f} s = '
        f'{len(items) / stats["seconds"]:.2f} videos/s, {src_frames / stats["seconds"]:.0f} source '
        f'frames/s decoded ({stats["frames"] / stats["seconds"]:.0f} kept frames/s at '
        f'{spec.fps:g} fps, {spec.height}x{spec.width})')
  t0 = time.perf_counter()
  builder.prepare(spec, raw, out, workers=_WORKERS.value, progress=False)
  print(f'ArrayRecord write + index: {time.perf_counter() - t0:.1f} s')

  mesh = mesh_lib.make_mesh(config.mesh)
  system, srcs, info, _ = loop.build(config)
  examples = loop.examples_per_step(config, type(system), mesh)
  it = pipeline.train_iterator(config, srcs['train'], system.train_fields, examples, 0)
  batch = next(it)
  t0 = time.perf_counter()
  for _ in range(_BATCHES.value):
    next(it)
  pipe_s = (time.perf_counter() - t0) / _BATCHES.value
  shape = batch['video'].shape
  print(f'input pipeline ({config.data.worker_threads} threads): {1 / pipe_s:.1f} batches/s '
        f'of {tuple(shape)} uint8 ({shape[0] * shape[1] / pipe_s:.0f} frames/s JPEG-decoded)')

  state = loop.init_state(config, system, info, mesh)
  step = step_lib.make_train_step(system, mesh, config.seed,
                                  optim.schedule(config.optim, config.num_steps), config.ema_decay)
  gbatch = mesh_lib.to_global(batch, mesh)
  compiled = step.lower(state, gbatch).compile()
  state, m = compiled(state, gbatch)
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  for _ in range(_STEPS.value):
    state, m = compiled(state, gbatch)
  jax.block_until_ready(m)
  step_s = (time.perf_counter() - t0) / _STEPS.value
  print(f'train step (configs/hybrid.py:ucf_crime_local): {1 / step_s:.2f} steps/s')
  print(f'pipeline / step: {step_s / pipe_s:.1f}x (>= 3x: the step never waits for data)')


if __name__ == '__main__':
  app.run(main)
