"""The `detection` evaluator: boxes of one category (a person detector), one row per image.

Needs `predict` to give 'boxes' [B, K, 4] (normalised x0, y0, x1, y1), 'scores' [B, K] and
'valid' bool [B, K] (K = detections kept by NMS; invalid slots are padding); the trainer puts the
ground-truth fields `row_fields` = ('boxes', 'box_valid') ([B, P, 4], bool [B, P]) of the source's
examples into the rows, and 'label' is the number of objects in the image.

Reports COCO box mAP (`map` = AP@[.5:.95], `map50`, `map75`, `ar100`; vad_jax.evaluate.coco,
COCOeval semantics, parity with pycocotools tested) and precision / recall / F1 at one operating
point (score >= score_threshold, IoU 0.5); saves every image's detections
(`detections_<split>.npz`), the same data as COCO JSON (`coco_gt_<split>.json`,
`coco_dets_<split>.json`: `COCO(gt).loadRes(dets)` recomputes the numbers with pycocotools when
max_detections is 100; image_id = the row's index, category 1 'person') and, given the split's
source, a PNG of some images with true (green) and predicted (red) boxes.
"""

from __future__ import annotations


import numpy as np

from vad_jax import storage
from vad_jax.evaluate import coco, plots


def _per_image(boxes, valid, scores=None):
  """Padded [N, P, 4] + valid [N, P] (+ scores [N, P]) -> per-image lists of the valid ones."""
  if scores is None:
    return [b[v] for b, v in zip(boxes, valid)]
  return [(b[v], s[v]) for b, s, v in zip(boxes, scores, valid)]


class Detection:
  """Evaluator (vad_jax.evaluate.evaluators). Logged scalars: map50, map, precision, recall, f1
  (the last three at `score_threshold`, IoU 0.5)."""

  scalars = ('map50', 'map', 'precision', 'recall', 'f1')
  row_fields = ('boxes', 'box_valid')

  def __init__(self, config, class_names, score_threshold: float = 0.5,
               max_detections: int = 100, plot_images: int = 8):
    self.height = int(config.data.height)
    self.width = int(config.data.width)
    self.class_names = tuple(class_names)
    self.score_threshold = float(score_threshold)
    self.max_detections = int(max_detections)
    self.plot_images = int(plot_images)
    if self.max_detections < 1:
      raise ValueError(f'max_detections must be >= 1, got {max_detections}')

  def check_split(self, labels: np.ndarray, split: str) -> None:
    """labels: objects per image [N]. mAP is undefined without any object."""
    labels = np.asarray(labels)
    if labels.size == 0 or not np.any(labels > 0):
      raise ValueError(f'the {split} split ({labels.size} images) has no annotated object: '
                       f'detection mAP / recall are undefined; give it images with boxes')

  def evaluate(self, rows: dict):
    """rows -> (results JSON-ready, artifact for `write`: the padded arrays sorted by index)."""
    for key in ('boxes', 'box_valid', 'out/boxes', 'out/scores'):
      if key not in rows:
        raise ValueError(f"detection needs rows['{key}'] (predict: 'boxes', 'scores', 'valid'; "
                         f"ground truth: {self.row_fields}); got {sorted(rows)}")
    order = np.argsort(np.asarray(rows['index']), kind='stable')
    gt_boxes = np.asarray(rows['boxes'], np.float32)[order]
    gt_valid = np.asarray(rows['box_valid'], bool)[order]
    det_boxes = np.asarray(rows['out/boxes'], np.float32)[order]
    det_scores = np.asarray(rows['out/scores'], np.float32)[order]
    det_valid = (np.asarray(rows['out/valid'], bool)[order] if 'out/valid' in rows
                 else np.ones(det_scores.shape, bool))
    if gt_boxes.ndim != 3 or gt_boxes.shape[-1] != 4 or det_boxes.ndim != 3 or \
        det_boxes.shape[-1] != 4 or det_scores.shape != det_boxes.shape[:2] or \
        gt_valid.shape != gt_boxes.shape[:2] or det_valid.shape != det_scores.shape:
      raise ValueError(f'detection rows: boxes {gt_boxes.shape} / box_valid {gt_valid.shape} '
                       f'must be [N, P, 4] / [N, P], out/boxes {det_boxes.shape} / scores '
                       f'{det_scores.shape} / valid {det_valid.shape} [N, K, 4] / [N, K]')
    dets = _per_image(det_boxes, det_valid, det_scores)
    gts = _per_image(gt_boxes, gt_valid)
    ap = coco.evaluate(dets, gts, max_dets=self.max_detections)
    op = coco.match_at(dets, gts, self.score_threshold, iou=0.5, max_dets=self.max_detections)
    shown = det_valid & (det_scores >= self.score_threshold)
    results = {
        'map50': ap['map50'], 'map': ap['map'], 'map75': ap['map75'], 'ar100': ap['ar100'],
        'precision': op['precision'], 'recall': op['recall'], 'f1': op['f1'],
        'tp': op['tp'], 'fp': op['fp'], 'fn': op['fn'],
        'score_threshold': self.score_threshold,
        'num_images': int(len(order)),
        'num_objects': int(gt_valid.sum()),
        'detections_per_image': float(shown.sum(1).mean()) if len(order) else 0.0,
    }
    artifact = {'index': np.asarray(rows['index'], np.int32)[order],
                'gt_boxes': gt_boxes, 'gt_valid': gt_valid, 'det_boxes': det_boxes,
                'det_scores': det_scores, 'det_valid': det_valid}
    return results, artifact

  def definitions(self, config) -> dict:
    del config
    return {
        'map_definition': 'COCO box AP averaged over IoU 0.50:0.05:0.95 (AP@[.5:.95]); COCOeval '
                          'semantics: 101-point interpolation, maxDets '
                          f'{self.max_detections}, area all, one category; parity with '
                          'pycocotools tested',
        'map50_definition': 'COCO box AP at IoU 0.5 (101-point interpolated precision, maxDets '
                            f'{self.max_detections}, area all)',
        'ar100_definition': f'COCO AR@{self.max_detections}: recall over all detections, '
                            'averaged over IoU 0.50:0.05:0.95',
        'precision_recall_definition': (
            f'detections with score >= {self.score_threshold} matched greedily (by score) to '
            'ground truth at IoU >= 0.5 as in COCOeval; precision = tp / max(tp + fp, 1), '
            'recall = tp / max(tp + fn, 1), f1 = 2pr / (p + r) (0 when p + r = 0)'),
    }

  def write(self, artifact: dict, results: dict, workdir: str, split: str,
            source=None) -> None:
    """detections_<split>.npz, coco_gt_<split>.json, coco_dets_<split>.json and, with `source`
    (source[i]: {'image': uint8 [H, W, 3], ...}, i = the row's index), <split>_detections.png."""
    storage.save_npz(storage.join(workdir, f'detections_{split}.npz'), **artifact)
    a = artifact
    dets = _per_image(a['det_boxes'], a['det_valid'], a['det_scores'])
    gts = _per_image(a['gt_boxes'], a['gt_valid'])
    gt_json, det_list = coco.to_coco(dets, gts, self.height, self.width,
                                     image_ids=a['index'].astype(np.int64))
    for name, obj in ((f'coco_gt_{split}.json', gt_json), (f'coco_dets_{split}.json', det_list)):
      storage.write_json(storage.join(workdir, name), obj, indent=None)
    if source is not None and self.plot_images > 0 and len(a['index']):
      plot_detections(source, a, storage.join(workdir, f'{split}_detections.png'),
                      self.score_threshold, self.plot_images)


def pick_images(num_objects: np.ndarray, num: int) -> list[int]:
  """Up to `num` row positions: the most crowded images first (ties: lower position), and at
  least one without objects when the split has one."""
  by_count = list(np.argsort(-np.asarray(num_objects), kind='stable'))
  chosen = by_count[:num]
  empty = [i for i in by_count if num_objects[i] == 0]
  if empty and not any(num_objects[i] == 0 for i in chosen):
    chosen = chosen[:num - 1] + [empty[0]]
  return [int(i) for i in chosen]


def plot_detections(source, artifact: dict, path: str, score_threshold: float,
                    num: int = 8) -> None:
  """A grid of images: true boxes green, predictions with score >= threshold red with the score."""
  plt = plots.plt
  a = artifact
  picked = pick_images(a['gt_valid'].sum(1), num)
  cols = min(4, len(picked))
  nrows = -(-len(picked) // cols)
  fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 3.2 * nrows), squeeze=False)
  for ax, i in zip(axes.flat, picked):
    image = np.asarray(source[int(a['index'][i])]['image'])
    h, w = image.shape[:2]
    ax.imshow(image)
    scale = np.array([w, h, w, h], np.float64)
    for x0, y0, x1, y1 in a['gt_boxes'][i][a['gt_valid'][i]] * scale:
      ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec='lime', lw=1.5))
    keep = a['det_valid'][i] & (a['det_scores'][i] >= score_threshold)
    for (x0, y0, x1, y1), s in zip(a['det_boxes'][i][keep] * scale, a['det_scores'][i][keep]):
      ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec='red', lw=1.0))
      ax.text(x0, y0, f'{s:.2f}', color='white', fontsize=6, va='bottom', clip_on=True,
              bbox={'facecolor': 'red', 'alpha': 0.6, 'pad': 0.5, 'lw': 0})
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_title(f'image {int(a["index"][i])}: {int(a["gt_valid"][i].sum())} true, '
                 f'{int(keep.sum())} predicted', fontsize=8)
    ax.axis('off')
  for ax in list(axes.flat)[len(picked):]:
    ax.axis('off')
  plots._save(fig, path)  # noqa: SLF001 (the package's atomic PNG writer)
