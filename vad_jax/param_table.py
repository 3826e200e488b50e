"""Parameter table of a config's model, from shapes only (nothing is compiled or run).

  python -m vad_jax.param_table --config=configs/hybrid.py

The system is built the way the trainer builds it (from the training source's element spec).
Counts weights, biases and norm scales/offsets (PyTorch's convention); other collections
(BatchNorm running statistics, ...) are listed separately.
"""

import jax
import numpy as np
from absl import app
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)


def count(tree) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def param_rows(config) -> list[tuple[str, int]]:
  """[(top-level module, #params)] + ('total', n) + one row per non-trained collection."""
  from vad_jax import systems
  from vad_jax.data import pipeline, sources
  from vad_jax.data.source import DataInfo
  cls = systems.get(config.system)
  src = sources.make(config, 'train', cls.data_request(config))
  spec = pipeline.element_spec(config, src, cls.train_fields)
  info = DataInfo(tuple(src.class_names), np.ones(len(src.class_names)), spec)
  system = cls.from_config(config, info)
  variables = jax.eval_shape(system.init, jax.random.key(0), pipeline.batch_spec(spec, 1))
  params = variables['params']
  rows = [(name, count(params[name])) for name in params]
  rows.append(('total', count(params)))
  for name, tree in variables.items():
    if name != 'params':
      label = 'BatchNorm running stats' if name == 'batch_stats' else name
      rows.append((f'{label} (not trained)', count(tree)))
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
