"""One of two CPU processes (gloo) for tests/test_multiprocess.py: scores a toy split on a mesh
whose devices are NOT ordered by process, and checks every output row meets its own metadata."""

import json
import os
import sys

os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=2'
os.environ['JAX_PLATFORMS'] = 'cpu'

import jax  # noqa: E402

jax.config.update('jax_cpu_collectives_implementation', 'gloo')
port, pid = sys.argv[1], int(sys.argv[2])
jax.distributed.initialize(coordinator_address=f'127.0.0.1:{port}', num_processes=2, process_id=pid)

import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

from vad_jax import mesh as mesh_lib  # noqa: E402
from vad_jax.data import pipeline  # noqa: E402
from vad_jax.evaluate import runner  # noqa: E402


class Toy:
  """11 'videos' of 3 frames whose pixels all equal the video index; label = index % 3."""
  class_names = ('a', 'b', 'c')
  sequence_field = 'video'

  def __len__(self):
    return 11

  def __getitem__(self, i):
    return {'video': np.full((3, 2, 2, 1), i, np.uint8), 'label': np.int32(i % 3),
            'index': np.int32(i), 'mask': np.full(3, i % 2, np.uint8)}

  def labels(self):
    return np.arange(11) % 3

  def lengths(self):
    return np.full(11, 3)

  def eval_transform(self, ex):
    return ex


# Process 1's devices first: the global batch order is not the process order.
devices = sorted(jax.devices(), key=lambda d: (-d.process_index, d.id))
mesh = Mesh(np.array(devices), ('data',))
config = ml_collections.ConfigDict({'data': {'worker_threads': 1}})
predict = jax.jit(lambda state, b: {'score': b['video'].astype(jnp.float32).mean((1, 2, 3, 4))},
                  in_shardings=(mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)),
                  out_shardings=mesh_lib.batch_sharding(mesh))
rows = runner.predict_split(predict, None, pipeline.eval_batches(config, Toy(), ('video',), 4),
                            mesh, ('video',))

# What gathering host-local metadata in process order would have paired with the first batch.
first = next(iter(pipeline.eval_batches(config, Toy(), ('video',), 4)))
local_order = np.asarray(multihost_utils.process_allgather(first['index'], tiled=True))
global_order = np.asarray(multihost_utils.process_allgather(
    mesh_lib.to_global({'index': first['index']}, mesh)['index'], tiled=True))
print(json.dumps({'index': rows['index'].tolist(), 'label': rows['label'].tolist(),
                  'score': rows['out/score'].tolist(), 'mask0': rows['mask'][:, 0].tolist(),
                  'local_order': local_order.tolist(), 'global_order': global_order.tolist()}))
