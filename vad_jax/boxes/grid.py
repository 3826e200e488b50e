"""The seed-004 grid: which cell owns a box (training targets) and cell outputs -> boxes.

A grid has Sy rows and Sx columns (S x S for square inputs; S = input size / 16). Cell (row j,
column i) covers x in [i / Sx, (i + 1) / Sx) and y in [j / Sy, (j + 1) / Sy) and predicts
(tx, ty, tw, th, objectness), decoded exactly as the seed does:

  cx = (i + tx) / Sx    cy = (j + ty) / Sy    w = tw    h = th     (all normalised)
  box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)

Assignment (`cell_targets`): a box belongs to the cell holding its centre (a centre on the
right / bottom edge goes to the last cell). When several boxes share a cell, the one with the
largest area owns it (ties: the lower box index); the others are no training target (the grid
can hold one box a cell: at evaluation they count as missed).
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ['cell_targets', 'decode', 'centers_cells']


def centers_cells(boxes: jnp.ndarray, grid: tuple[int, int]):
  """boxes [..., 4] -> (row j, column i) int32 [...] of the cell holding each centre, and the
  centre in cell units (cx * Sx, cy * Sy) [..., 2]."""
  sy, sx = grid
  cx = 0.5 * (boxes[..., 0] + boxes[..., 2]) * sx
  cy = 0.5 * (boxes[..., 1] + boxes[..., 3]) * sy
  i = jnp.clip(jnp.floor(cx), 0, sx - 1).astype(jnp.int32)
  j = jnp.clip(jnp.floor(cy), 0, sy - 1).astype(jnp.int32)
  return j, i, jnp.stack([cx, cy], -1)


def cell_targets(boxes: jnp.ndarray, valid: jnp.ndarray, grid: tuple[int, int]) -> dict:
  """Training targets of a batch.

  boxes float [B, P, 4] normalised (x0, y0, x1, y1); valid bool [B, P]. ->
    'obj'   float32 [B, Sy, Sx]     1 on cells that own a box
    'txty'  float32 [B, Sy, Sx, 2]  the owner's centre offset in its cell, in [0, 1]
    'twth'  float32 [B, Sy, Sx, 2]  the owner's normalised width and height
    'owner' int32 [B, Sy, Sx]       the owning box's index in P, -1 for empty cells
  """
  sy, sx = grid
  boxes = boxes.astype(jnp.float32)
  j, i, centre = centers_cells(boxes, grid)
  cell = j * sx + i                                                            # [B, P]
  hit = (cell[..., None] == jnp.arange(sy * sx)) & valid[..., None]            # [B, P, S*S]
  area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])     # [B, P]
  key = jnp.where(hit, area[..., None], -jnp.inf)
  owner = jnp.where(hit.any(1), jnp.argmax(key, axis=1), -1)                   # [B, S*S]
  take = lambda x: jnp.take_along_axis(x, jnp.maximum(owner, 0)[..., None], axis=1)
  offset = centre - jnp.stack([i, j], -1).astype(jnp.float32)                  # [B, P, 2]
  size = jnp.stack([boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]], -1)
  obj = (owner >= 0).astype(jnp.float32)
  shape = (boxes.shape[0], sy, sx)
  return {'obj': obj.reshape(shape),
          'txty': (take(offset) * obj[..., None]).reshape(*shape, 2),
          'twth': (take(size) * obj[..., None]).reshape(*shape, 2),
          'owner': owner.reshape(shape).astype(jnp.int32)}


def decode(cells: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """cells [B, Sy, Sx, 5] = (tx, ty, tw, th, objectness) after the sigmoid -> (boxes float32
  [B, Sy * Sx, 4] normalised (x0, y0, x1, y1), scores [B, Sy * Sx]), cells in row-major order."""
  b, sy, sx, _ = cells.shape
  cells = cells.astype(jnp.float32)
  i = jnp.arange(sx, dtype=jnp.float32)[None, None, :]
  j = jnp.arange(sy, dtype=jnp.float32)[None, :, None]
  cx = (i + cells[..., 0]) / sx
  cy = (j + cells[..., 1]) / sy
  w, h = cells[..., 2], cells[..., 3]
  boxes = jnp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
  return boxes.reshape(b, sy * sx, 4), cells[..., 4].reshape(b, sy * sx)
