"""Run a prediction function over a whole split and gather the rows on every host.

Every field of a batch (the inputs `predict` reads and the metadata evaluators read) becomes a
global array with the same sharding, and `predict`'s outputs come back with that sharding; all
of them are then gathered as global arrays. So an output row always meets its own 'index',
'label' and 'mask', whatever the order of the mesh's devices across processes (gathering
host-local metadata beside a global output would pair rows wrongly when the mesh is not
ordered by process).
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
from jax.experimental import multihost_utils

from vad_jax import mesh as mesh_lib

OUTPUT = 'out/'   # prefix of prediction outputs in the gathered rows


def predict_split(predict: Callable, state, batches: Iterable[dict], mesh,
                  input_fields: tuple[str, ...]) -> dict[str, np.ndarray]:
  """-> {metadata field: [N, ...], 'out/<output>': [N, ...]} for the N real examples, sorted by
  'index' (padding rows, index -1, dropped). `predict(state, {field: global array})`."""
  chunks = []
  for batch in batches:
    arrays = mesh_lib.to_global(batch, mesh)
    out = predict(state, {f: arrays[f] for f in input_fields})
    rows = {k: v for k, v in arrays.items() if k not in input_fields}
    rows.update({OUTPUT + k: v for k, v in out.items()})
    chunks.append(multihost_utils.process_allgather(rows, tiled=True))
  if not chunks:
    raise ValueError('the split is empty')
  gathered = {k: np.concatenate([np.asarray(c[k]) for c in chunks]) for k in chunks[0]}
  keep = np.flatnonzero(gathered['index'] >= 0)
  keep = keep[np.argsort(gathered['index'][keep], kind='stable')]
  return {k: v[keep] for k, v in gathered.items()}

