"""Test session setup: 8 fake CPU devices (set before JAX is imported) and a shared XLA cache."""

import os

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8').strip()
os.environ.setdefault('KERAS_BACKEND', 'jax')

import jax  # noqa: E402

jax.config.update('jax_compilation_cache_dir',
                  os.path.join(os.path.expanduser('~'), '.cache', 'vad_jax', 'xla-tests'))
jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
