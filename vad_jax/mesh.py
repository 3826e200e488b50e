"""Device mesh from the config and the shardings of the one train step.

`config.mesh` maps axis name -> size (-1: all remaining devices). Batches are sharded over 'data'
(and replicated over any other axis); parameters and optimizer state are replicated: the largest
system here has ~15M parameters, far below what asks for parameter sharding.
"""

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh(mesh_config, devices=None) -> Mesh:
  devices = list(jax.devices() if devices is None else devices)
  names = tuple(mesh_config.keys())
  if 'data' not in names:
    raise ValueError(f"config.mesh needs a 'data' axis, got {names}")
  sizes = [int(mesh_config[n]) for n in names]
  if sizes.count(-1) > 1:
    raise ValueError(f'config.mesh: at most one axis may be -1, got {dict(zip(names, sizes))}')
  fixed = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if len(devices) % fixed:
      raise ValueError(f'config.mesh {dict(zip(names, sizes))} does not divide {len(devices)} devices')
    sizes[sizes.index(-1)] = len(devices) // fixed
  if math.prod(sizes) != len(devices):
    raise ValueError(f'config.mesh {dict(zip(names, sizes))} needs {math.prod(sizes)} devices, '
                     f'have {len(devices)}')
  return Mesh(np.asarray(devices).reshape(sizes), names)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over 'data'."""
  return NamedSharding(mesh, P('data'))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_parallelism(mesh: Mesh) -> int:
  return mesh.shape['data']


def process_rows(mesh: Mesh, global_batch: int) -> np.ndarray:
  """int64 [global_batch / process_count]: the rows of a global batch this process's devices
  hold, in the order `to_global` reads them from its local batch (ascending)."""
  index = batch_sharding(mesh).addressable_devices_indices_map((global_batch,))
  rows = sorted({r for s in index.values() for r in range(*s[0].indices(global_batch))})
  return np.asarray(rows, np.int64)


def to_global(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """This process's slice of the batch -> global jax.Arrays sharded over 'data'."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}
