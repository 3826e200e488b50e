"""Fixed-size greedy non-maximum suppression, jittable (inside the predict step: the host gets
at most `max_output` boxes an image instead of every grid cell).

Greedy NMS as usual: take boxes by decreasing score; keep one unless it overlaps an already kept
box with IoU > `iou_threshold`. Hand-written because neither jax nor optax has one; shapes are
static (top-k candidates, a `fori_loop` over them, outputs padded), so it vmaps and jits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ['iou_matrix', 'nms', 'batched_nms']


def iou_matrix(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  """IoU of boxes a [N, 4] and b [M, 4] (x0, y0, x1, y1) -> [N, M] (0 where the union is 0)."""
  lo = jnp.maximum(a[:, None, :2], b[None, :, :2])
  hi = jnp.minimum(a[:, None, 2:], b[None, :, 2:])
  inter = jnp.prod(jnp.clip(hi - lo, 0), -1)
  area = lambda x: jnp.clip(x[:, 2] - x[:, 0], 0) * jnp.clip(x[:, 3] - x[:, 1], 0)
  union = area(a)[:, None] + area(b)[None, :] - inter
  return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1), 0.0)


def nms(boxes: jnp.ndarray, scores: jnp.ndarray, iou_threshold: float, max_output: int,
        score_threshold: float = 0.0, pre_nms_topk: int | None = None):
  """boxes [N, 4], scores [N] -> (boxes [K, 4], scores [K], valid bool [K]), K = max_output.

  Candidates are the `pre_nms_topk` highest scores (all N when None; equal scores: lower index
  first) with score >= `score_threshold`; kept boxes come out by decreasing score, then padding
  (zeros, valid False). With pre_nms_topk >= N this is exactly greedy NMS over all boxes.
  """
  n = scores.shape[0]
  k = n if pre_nms_topk is None else min(int(pre_nms_topk), n)
  top, order = jax.lax.top_k(scores.astype(jnp.float32), k)
  cand = boxes[order].astype(jnp.float32)
  iou = iou_matrix(cand, cand)
  earlier = jnp.arange(k)[None, :] < jnp.arange(k)[:, None]                    # [i, j]: j < i
  overlaps = (iou > iou_threshold) & earlier

  def body(idx, keep):
    suppressed = jnp.any(keep & overlaps[idx])
    return keep.at[idx].set(keep[idx] & ~suppressed)

  keep = jax.lax.fori_loop(0, k, body, top >= score_threshold)
  slot = jnp.where(keep, jnp.cumsum(keep) - 1, max_output)                     # kept, in order
  out_boxes = jnp.zeros((max_output, 4), jnp.float32).at[slot].set(cand, mode='drop')
  out_scores = jnp.zeros((max_output,), jnp.float32).at[slot].set(top, mode='drop')
  valid = jnp.arange(max_output) < jnp.sum(keep)
  return out_boxes, out_scores, valid


def batched_nms(boxes: jnp.ndarray, scores: jnp.ndarray, iou_threshold: float, max_output: int,
                score_threshold: float = 0.0, pre_nms_topk: int | None = None):
  """`nms` over a leading batch axis: boxes [B, N, 4], scores [B, N] -> [B, K, 4], [B, K],
  [B, K]."""
  fn = lambda b, s: nms(b, s, iou_threshold, max_output, score_threshold, pre_nms_topk)
  return jax.vmap(fn)(boxes, scores)
