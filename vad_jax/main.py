"""Entry point: python -m vad_jax.main --config=configs/hybrid.py[:local] --workdir=DIR.

Config values are overridden with --config.KEY=VALUE (e.g. --config.num_steps=100); an unknown
key is an error. Running again with the same workdir resumes from its latest checkpoint.
"""

import logging as pylogging
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file, e.g. configs/hybrid.py:local.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and results.')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Call jax.distributed.initialize() first (multi-host TPU pods, SLURM, '
    'or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID set by the launcher).')
_CACHE = flags.DEFINE_string(
    'compilation_cache', os.path.join(os.path.expanduser('~'), '.cache', 'vad_jax', 'xla'),
    'Persistent XLA compilation cache directory ("" to disable).')
_KEEP_MEMORY = flags.DEFINE_bool(
    'keep_freed_memory', True, 'Linux: keep freed host memory in the process (glibc: one arena, '
    'no mmap, no trimming) so XLA:CPU reuses its step buffers instead of faulting them in every '
    'step (vad_jax/host_memory.py: a third of a CPU train step).')
flags.mark_flags_as_required(['config', 'workdir'])


class _QuietLibraries(pylogging.Filter):
  """Drops INFO chatter of Orbax and grain (every save logs dozens of lines); keeps warnings."""

  def filter(self, record: pylogging.LogRecord) -> bool:
    return record.levelno >= pylogging.WARNING or not any(
        f'{os.sep}{lib}{os.sep}' in record.pathname for lib in ('orbax', 'grain'))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if _KEEP_MEMORY.value:
    from vad_jax.host_memory import keep_freed_memory
    keep_freed_memory()
  import jax
  if _DISTRIBUTED.value:
    if not jax.config.jax_cpu_collectives_implementation:    # CPU processes talk through gloo
      jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    # jax reads JAX_COORDINATOR_ADDRESS itself (and detects TPU / SLURM / ...), not these two.
    ids = {k: int(os.environ[e]) for k, e in (('num_processes', 'JAX_NUM_PROCESSES'),
                                              ('process_id', 'JAX_PROCESS_ID')) if os.environ.get(e)}
    jax.distributed.initialize(**ids)
  if _CACHE.value:
    jax.config.update('jax_compilation_cache_dir', _CACHE.value)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 2.0)
  from vad_jax.train import loop
  logging.get_absl_handler().addFilter(_QuietLibraries())
  try:
    loop.check_config(_CONFIG.value)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  from vad_jax.data.source import DataError
  try:
    results = loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except DataError as e:
    logging.error('%s', e)
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  except loop.AcceleratorRequired as e:
    logging.error('%s', e)
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  if 'preempted_at_step' in results:
    print(f"preempted: checkpoint saved at step {results['preempted_at_step']} of "
          f"{results['num_steps']} in {os.path.abspath(_WORKDIR.value)}; run the same command "
          'again to resume')
    return
  metric = results['best_metric']
  stopped = f" (stopped early: {results['stopped_early']})" if results.get('stopped_early') else ''
  print(f'test {metric} {results[metric]:.4f} (checkpoint {results["checkpoint_step"]}, chosen on '
        f'validation {metric}){stopped}; outputs in {os.path.abspath(_WORKDIR.value)}')


def parse_flags(argv):
  """absl flag parsing with one-line errors for bad --config overrides (unknown keys, types)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f'error: {e}\nPass --helpshort to see the flags.')
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    msg = str(e.args[0] if e.args else e).strip("'").replace('\\n', ' ').replace("\\'", "'")
    bad = [a for a in argv[1:] if a.startswith('--config')]
    sys.exit(f'error: bad config {bad}: {msg}')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
