"""Test session setup: 8 fake CPU devices (set before JAX is imported), a shared XLA cache, and
a fixture that makes Keras weight initialisation cheap."""

import os

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8').strip()
os.environ.setdefault('KERAS_BACKEND', 'jax')

import jax  # noqa: E402

jax.config.update('jax_compilation_cache_dir',
                  os.path.join(os.path.expanduser('~'), '.cache', 'vad_jax', 'xla-tests'))
jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)


import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope='module')
def fast_keras_init():
  """Keras initialisers drawn with numpy: jax.random compiles once per weight shape (~160
  compiles, ~30 s for EfficientNet-B0 on 2 CPU cores); the values are replaced or arbitrary."""
  import jax.numpy as jnp
  from keras.src import backend

  rng = np.random.default_rng(123)
  patched = {
      'truncated_normal': lambda shape, mean=0.0, stddev=1.0, dtype=None, seed=None: jnp.asarray(
          np.clip(rng.standard_normal(shape), -2, 2) * stddev + mean, dtype or 'float32'),
      'normal': lambda shape, mean=0.0, stddev=1.0, dtype=None, seed=None: jnp.asarray(
          rng.standard_normal(shape) * stddev + mean, dtype or 'float32'),
      'uniform': lambda shape, minval=0.0, maxval=1.0, dtype=None, seed=None: jnp.asarray(
          rng.uniform(minval, maxval, shape), dtype or 'float32'),
  }
  with pytest.MonkeyPatch.context() as mp:
    for name, fn in patched.items():
      mp.setattr(backend.random, name, fn)
    yield
