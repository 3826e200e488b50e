"""Parameter table of a config's model, computed from shapes only (nothing is compiled or run).

  python -m vad_jax.models.param_table --config=configs/hybrid.py

Counts weights, biases and norm scales/offsets (PyTorch's convention); BatchNorm running
statistics are listed separately.
"""

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)


def count(tree) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def param_rows(config) -> list[tuple[str, int]]:
  """[(top-level module, #params)] + ('total', n) + ('BatchNorm running stats', n)."""
  from vad_jax import systems
  from vad_jax.classes import NUM_CLASSES
  cls = systems.get(config.system)
  system = cls.from_config(config, np.ones(NUM_CLASSES))
  shape = (1, cls.train_frames(config), config.data.height, config.data.width, 3)
  variables = jax.eval_shape(system.init, jax.random.key(0), jax.ShapeDtypeStruct(shape, jnp.uint8))
  params = variables['params']
  order = ('trunk', 'bilstm', 'transformer', 'regression', 'classification', 'vae')
  names = sorted(params, key=lambda n: (order.index(n) if n in order else len(order), n))
  rows = [(name, count(params[name])) for name in names]
  rows.append(('total', count(params)))
  rows.append(('BatchNorm running stats (not trained)', count(variables.get('batch_stats', {}))))
  return rows


def markdown(config) -> str:
  lines = ['| module | parameters |', '|---|---:|']
  lines += [f'| {name} | {n:,} |' for name, n in param_rows(config)]
  return '\n'.join(lines)


def main(argv):
  del argv
  print(markdown(_CONFIG.value))


if __name__ == '__main__':
  app.run(main)
