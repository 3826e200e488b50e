"""Seed 004 as a system: the YOLO-style single-class person detector (vad_jax.models.detector).

A training example is one frame ('image' uint8 [H, W, 3]) with its person boxes ('boxes' float32
[P, 4] normalised x0, y0, x1, y1; 'box_valid' bool [P]). Loss: `vad_jax.losses.grid.grid_loss`
(lambda_coord 5.0, lambda_noobj 0.5) on the targets of `vad_jax.boxes.grid.cell_targets` (a box
belongs to the cell holding its centre; in a shared cell the largest box wins).
Output (`predict`, inside the jitted predict step): the grid decoded as the seed does, then
greedy NMS (IoU > `nms_iou` suppressed, fixed size): 'boxes' float32 [B, K, 4] normalised,
'scores' [B, K] (objectness), 'valid' bool [B, K], K = `max_detections`, by decreasing score.
The `detection` evaluator reads them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from vad_jax.boxes import grid as grid_lib
from vad_jax.boxes import nms as nms_lib
from vad_jax.losses import grid as grid_loss
from vad_jax.models import detector as detector_model
from vad_jax.models.precision import dtype_policy
from vad_jax.systems.base import System


@dataclasses.dataclass(frozen=True)
class DetectorSystem(System):
  task: ClassVar[str] = 'detection'
  train_fields: ClassVar[tuple[str, ...]] = ('image', 'boxes', 'box_valid')
  predict_fields: ClassVar[tuple[str, ...]] = ('image',)

  model: detector_model.GridDetector
  grid: tuple[int, int]                 # (Sy, Sx) of the model's output
  lambda_coord: float = 5.0
  lambda_noobj: float = 0.5
  nms_iou: float = 0.5
  max_detections: int = 100
  pre_nms_topk: int = 300
  min_score: float = 0.001
  prior_examples: int = 2048            # training examples `prepare` reads for the head's priors

  @classmethod
  def check_config(cls, config) -> None:
    l, d = config.loss, config.detect
    if l.lambda_coord < 0 or l.lambda_noobj < 0:
      raise ValueError(f'loss.lambda_coord={l.lambda_coord} and loss.lambda_noobj='
                       f'{l.lambda_noobj} must be >= 0')
    if not 0 < d.nms_iou <= 1:
      raise ValueError(f'detect.nms_iou={d.nms_iou} must be in (0, 1]')
    if d.max_detections < 1 or d.pre_nms_topk < d.max_detections:
      raise ValueError(f'detect.max_detections={d.max_detections} must be >= 1 and <= '
                       f'detect.pre_nms_topk={d.pre_nms_topk}')
    if config.get('eval_tta'):
      raise ValueError(f'eval_tta={config.eval_tta!r}: test-time views would have to move the '
                       "detector's boxes back; set eval_tta=''")
    if config.data.get('augment'):
      raise ValueError(f"data.augment={config.data.augment!r} moves pixels but not boxes; the "
                       'detector augments with data.box_augment (vad_jax.data.box_augment)')
    if config.model.grid < 0:
      raise ValueError(f'model.grid={config.model.grid} must be >= 0 (0 = input size / 16)')

  @classmethod
  def from_config(cls, config, info) -> 'DetectorSystem':
    spec = info.element_spec
    if 'image' not in spec or len(spec['image'].shape) != 3 or 'boxes' not in spec:
      raise ValueError(f"the detector reads 'image' [H, W, 3] and 'boxes' [P, 4]; the data "
                       f'source {config.data.source!r} gives {spec}')
    dtype, param_dtype = dtype_policy(config.model)
    model = detector_model.from_config(config.model, dtype, param_dtype)
    h, w, _ = spec['image'].shape
    out = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x)[0],
                         jax.ShapeDtypeStruct((1, h, w, 3), jnp.uint8))
    l, d = config.loss, config.detect
    return cls(model=model, grid=(int(out.shape[1]), int(out.shape[2])),
               lambda_coord=l.lambda_coord, lambda_noobj=l.lambda_noobj, nms_iou=d.nms_iou,
               max_detections=d.max_detections, pre_nms_topk=d.pre_nms_topk,
               min_score=d.min_score)

  def init(self, rng: jax.Array, spec: dict) -> dict[str, Any]:
    return self.model.init({'params': rng}, jnp.zeros(spec['image'].shape, spec['image'].dtype))

  def prepare(self, variables, batches):
    """Prior initialisation of the head's biases from the training boxes (RetinaNet's prior
    init, Lin et al. 2017): sigmoid(bias) = (0.5, 0.5, mean w, mean h, fraction of cells owning
    a box). The seed's squared-size loss has a vanishing gradient as a predicted size goes to 0
    (d/dp (p^2 - t^2)^2 = 4 p (p^2 - t^2)): started at 0.5, sizes overshoot below the targets and
    stay there (at :local the widths came out at 0.56x the truth); started at the mean size,
    they are learnt. The loss is unchanged. Reads up to `prior_examples` training examples."""
    sizes, owned, cells, seen = [], 0.0, 0, 0
    targets = jax.jit(grid_lib.cell_targets, static_argnums=2)
    for batch in batches:
      keep = batch['index'] >= 0
      boxes, valid = np.asarray(batch['boxes'])[keep], np.asarray(batch['box_valid'])[keep]
      t = jax.device_get(targets(boxes, valid, self.grid))
      sizes.append((boxes[..., 2:] - boxes[..., :2])[valid])
      owned += float(np.sum(t['obj']))
      cells += int(np.prod(t['obj'].shape))
      seen += int(keep.sum())
      if seen >= self.prior_examples:
        break
    sizes = np.concatenate(sizes) if sizes else np.zeros((0, 2))
    # every process reads its own rows: sum over processes so all set the same biases
    from jax.experimental import multihost_utils
    sums = np.array([*sizes.sum(0), len(sizes), owned, cells], np.float64)
    sums = np.asarray(multihost_utils.process_allgather(sums)).reshape(-1, 5).sum(0)
    if not sums[2] or not sums[3]:
      return variables
    logit = lambda p: float(np.log(p / (1 - p)))
    wh = np.clip(sums[:2] / sums[2], 1e-3, 1 - 1e-3)
    prior = np.clip(sums[3] / sums[4], 1e-4, 1 - 1e-4)
    bias = np.array([0.0, 0.0, logit(wh[0]), logit(wh[1]), logit(prior)], np.float32)
    head = variables['params']['head']
    head = dict(head, bias=bias.astype(head['bias'].dtype))
    return {**variables, 'params': {**variables['params'], 'head': head}}

  def loss(self, variables, batch: dict, rng: jax.Array):
    """batch: 'image' [B, H, W, 3], 'boxes' [B, P, 4], 'box_valid' [B, P]."""
    del rng
    logits, mutated = self.model.apply(variables, batch['image'], train=True,
                                       mutable=['batch_stats'])
    targets = grid_lib.cell_targets(batch['boxes'], batch['box_valid'], self.grid)
    total, parts = grid_loss.grid_loss(logits, targets, self.lambda_coord, self.lambda_noobj)
    owned = jnp.sum(targets['obj']) / jnp.maximum(jnp.sum(batch['box_valid']), 1)
    metrics = {'loss': total, **parts, 'boxes_owning_a_cell': owned}
    return total, (metrics, {'batch_stats': mutated['batch_stats']})

  def cells(self, variables, images: jnp.ndarray) -> jnp.ndarray:
    """[B, Sy, Sx, 5] after the sigmoid: (tx, ty, tw, th, objectness) per cell."""
    return jax.nn.sigmoid(self.model.apply(variables, images, train=False))

  def predict(self, variables, batch: dict) -> dict[str, jnp.ndarray]:
    boxes, scores = grid_lib.decode(self.cells(variables, batch['image']))
    boxes, scores, valid = nms_lib.batched_nms(
        jnp.clip(boxes, 0.0, 1.0), scores, self.nms_iou, self.max_detections,
        self.min_score, self.pre_nms_topk)
    return {'boxes': boxes, 'scores': scores, 'valid': valid}

  def definitions(self) -> dict:
    return {'prediction_definition':
                f'grid {self.grid[0]}x{self.grid[1]} decoded as seed 004 (cx = (i + tx) / S, '
                f'w = tw), boxes clipped to the image, objectness >= {self.min_score:g}, greedy '
                f'NMS at IoU {self.nms_iou:g} over the top {self.pre_nms_topk} cells, at most '
                f'{self.max_detections} boxes an image'}
