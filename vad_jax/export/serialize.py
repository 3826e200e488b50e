"""Serialise a trained run's predict function with `jax.export`.

  FILE        the serialised `jax.export.Exported`: predict(x) of the run's best checkpoint
              (the variables evaluation used) with its weights folded in as constants; the batch
              dimension is symbolic ('b': any batch size); lowered for `platforms`
  FILE.json   what it takes and gives: input name, shape (with 'b'), dtype; every output's
              shape and dtype; class names, system, task, checkpoint step, platforms

The input is the system's predict field (`System.predict_fields[0]`: 'video', 'image' or
'features') shaped like one training example (`data_info.json`), or with `length` steps on the
first axis for sequence inputs (videos / feature sequences scored longer than the training
clips). Outputs are the system's `predict` dict (e.g. 'score' [b, K], 'logits' [b, K, C] for
anomaly systems; 'boxes', 'scores', 'valid' for the detector), averaged over the run's
test-time views (`eval_tta`) as its evaluation was.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ['export_run', 'SUFFIX']

SUFFIX = '.json'


def export_run(workdir: str, out: str, length: int | None = None,
               platforms: tuple[str, ...] | None = None) -> dict:
  """Writes `out` and `out + '.json'` (atomically) for the run in `workdir` -> the metadata."""
  from vad_jax.train import trained
  run = trained.load(workdir)
  field = run.system.predict_fields[0]
  spec = run.info.element_spec[field]
  shape = list(spec.shape)
  if length is not None:
    if field == 'image':
      raise ValueError(f"--length sets the time axis of sequence inputs; this run's input is "
                       f'{field!r} {tuple(shape)}')
    if length < 1:
      raise ValueError(f'--length={length} must be >= 1')
    shape[0] = int(length)
  platforms = tuple(platforms or dict.fromkeys(('cpu', jax.default_backend())))
  from vad_jax.evaluate import tta
  variables = jax.tree.map(jnp.asarray, run.variables)
  views = tta.parse(run.config.get('eval_tta', ''))
  system_predict = tta.with_views(run.system.predict, views, field=field)   # as evaluated

  def predict(x):
    return system_predict(variables, {field: x})

  b, = jax.export.symbolic_shape('b')
  arg = jax.ShapeDtypeStruct((b, *shape), spec.dtype)
  exported = jax.export.export(jax.jit(predict), platforms=platforms)(arg)
  outputs = jax.tree_util.tree_unflatten(exported.out_tree, exported.out_avals)
  meta = {
      'format': 'jax.export', 'jax_version': jax.__version__, 'platforms': list(platforms),
      'system': run.config.system, 'task': run.system.task,
      'config': f"configs/{run.config.get('name', run.config.system)}.py:"
                f"{run.config.get('variant', '')}",
      'checkpoint_step': int(run.step), 'class_names': list(run.info.class_names),
      'test_time_views': run.config.get('eval_tta', ''),
      'input': {'name': field, 'shape': ['b', *shape], 'dtype': str(np.dtype(spec.dtype))},
      'outputs': {k: {'shape': [str(d) for d in v.shape], 'dtype': str(v.dtype)}
                  for k, v in outputs.items()},
  }
  folder = os.path.dirname(os.path.abspath(out))
  os.makedirs(folder, exist_ok=True)
  for path, data in ((out, bytes(exported.serialize())),
                     (out + SUFFIX, json.dumps(meta, indent=2).encode())):
    with open(path + '.tmp', 'wb') as f:
      f.write(data)
    os.replace(path + '.tmp', path)
  return meta
