"""A finished run as an inference object: its config, its system and the variables its test
split was scored with (the best-on-validation checkpoint; the averaged weights when EMA / SWA
was kept), for commands that use a trained run (`python -m vad_jax.detect`, ...).

The trainer writes `<workdir>/data_info.json` (the `DataInfo` the system was built from: class
names and counts, the element spec of one training example), so a system is rebuilt without its
training data.
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from vad_jax import storage, systems
from vad_jax.data.source import DataInfo

INFO_FILE = 'data_info.json'


def save_info(workdir: str, info: DataInfo) -> None:
  """Writes `info` as <workdir>/data_info.json (atomically)."""
  obj = {'class_names': list(info.class_names),
         'class_counts': [int(c) for c in info.class_counts],
         'element_spec': {k: {'shape': list(v.shape), 'dtype': str(v.dtype)}
                          for k, v in info.element_spec.items()}}
  storage.write_json(storage.join(workdir, INFO_FILE), obj)


def load_info(workdir: str) -> DataInfo:
  import jax
  obj = storage.read_json(storage.join(workdir, INFO_FILE))
  spec = {k: jax.ShapeDtypeStruct(tuple(v['shape']), np.dtype(v['dtype']))
          for k, v in obj['element_spec'].items()}
  return DataInfo(tuple(obj['class_names']), np.asarray(obj['class_counts'], np.int64), spec)


@dataclasses.dataclass(frozen=True)
class Trained:
  config: ml_collections.ConfigDict
  system: systems.System
  variables: dict          # {'params': ..., **collections} as numpy
  info: DataInfo
  step: int                # the checkpoint's step


def best_step(workdir: str, best_metric: str, best_mode: str = 'max') -> int:
  """The step under <workdir>/best with the best `best_metric` (Orbax's own choice, read-only)."""
  import orbax.checkpoint as ocp
  best = storage.join(workdir, 'best')
  step = None
  if storage.is_dir(best):
    options = ocp.CheckpointManagerOptions(read_only=True, best_mode=best_mode,
                                           best_fn=lambda m: m[best_metric])
    manager = ocp.CheckpointManager(best, item_names=('state',), options=options)
    step = manager.best_step()
    if step is None and len(manager.all_steps()) == 1:   # saved without metrics: the only one
      step = manager.all_steps()[0]
    manager.close()
  if step is None:
    raise FileNotFoundError(f'{workdir}: no best checkpoint under {best} (the run never '
                            'evaluated on validation)')
  return int(step)


def restore_eval_variables(state_dir: str) -> dict:
  """The variables evaluation uses (TrainState.eval_variables) from a TrainState checkpoint,
  restored as numpy without a template."""
  import jax
  import orbax.checkpoint as ocp
  with ocp.PyTreeCheckpointer() as ckptr:
    meta = ckptr.metadata(state_dir).item_metadata
    args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                        getattr(meta, 'tree', meta))
    state = ckptr.restore(state_dir, restore_args=args)
  params, model_state = state['params'], state.get('model_state') or {}
  ema = state.get('ema') or {}
  if ema and ('count' not in ema or int(ema['count']) > 0):
    params, model_state = ema['params'], ema.get('model_state') or model_state
  return {'params': params, **model_state}


def load(workdir: str) -> Trained:
  """The run in `workdir` (config.json, data_info.json, best/<step>/state)."""
  workdir = storage.resolve(workdir)
  cfg_path = storage.join(workdir, 'config.json')
  if not storage.exists(cfg_path):
    raise FileNotFoundError(f'{workdir}: no config.json: not a vad_jax training workdir')
  if not storage.exists(storage.join(workdir, INFO_FILE)):
    raise FileNotFoundError(f'{workdir}: no {INFO_FILE} (written at the start of training by '
                            'vad_jax >= this version): train the run again')
  config = ml_collections.ConfigDict(storage.read_json(cfg_path))
  info = load_info(workdir)
  system = systems.get(config.system).from_config(config, info)
  step = best_step(workdir, config.best_metric, config.get('best_mode', 'max'))
  variables = restore_eval_variables(storage.join(workdir, 'best', str(step), 'state'))
  return Trained(config, system, variables, info, step)
