"""Train-step throughput, compile time and peak memory of a config.

  python benchmarks/train_step.py --config=configs/hybrid.py:local [--steps=10]
  python benchmarks/train_step.py --config=configs/hybrid.py --config.requires_accelerator=False

Times the jitted, sharded train step on one fixed batch (data loading excluded), after one
compile + warm-up step. Peak memory: the device allocator's peak where JAX reports one (GPU/TPU),
else the process's peak resident set (CPU).
"""

import resource
import sys
import time

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed steps after the compile step.')
flags.mark_flag_as_required('config')


def main(argv):
  del argv
  import jax
  from vad_jax import mesh as mesh_lib
  from vad_jax.data import pipeline
  from vad_jax.train import loop, optim, step as step_lib

  config = _CONFIG.value
  mesh = mesh_lib.make_mesh(config.mesh)
  system, srcs, info, _ = loop.build(config)
  examples = loop.examples_per_step(config, type(system), mesh)
  batch = mesh_lib.to_global(next(pipeline.train_iterator(
      config, srcs['train'], system.train_fields, examples, 0)), mesh)
  state = loop.init_state(config, system, info, mesh)
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  step = step_lib.make_train_step(system, mesh, config.seed,
                                  optim.schedule(config.optim, config.num_steps), config.ema_decay,
                                  **step_lib.tricks(config))   # SAM, mixup, SWA as configured

  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  state, m = compiled(state, batch)
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  for _ in range(_STEPS.value):
    state, m = compiled(state, batch)
  jax.block_until_ready(m)
  dt = (time.perf_counter() - t0) / _STEPS.value

  stats = jax.devices()[0].memory_stats() or {}
  if 'peak_bytes_in_use' in stats:
    peak = f"{stats['peak_bytes_in_use'] / 2**30:.2f} GiB device peak"
  else:
    peak = f'{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB host peak RSS'
  seq = srcs['train'].sequence_field
  shape = batch[seq].shape
  frames = shape[0] if seq == 'image' else shape[0] * shape[1]
  print(f'config: {config.name}:{config.variant}  batch {examples} examples of {seq} '
        f'{tuple(shape[1:])} ({config.batch_size} in config units)  dtype {config.model.dtype}  '
        f'params {n_params:,}')
  print(f'devices: {jax.device_count()} x {jax.devices()[0].device_kind} ({jax.default_backend()})')
  print(f'compile: {compile_s:.1f} s')
  print(f'step: {dt * 1e3:.1f} ms  ->  {config.batch_size / dt:.1f} batch units/s, '
        f'{frames / dt:.0f} {"vectors" if seq == "features" else "frames"}/s')
  print(f'memory: {peak}')
  sys.stdout.flush()


if __name__ == '__main__':
  app.run(main)
