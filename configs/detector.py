"""YOLO-style single-class person detector (seed 004): 9 conv layers (BatchNorm + LeakyReLU 0.1)
-> 1x1 conv head, an S x S grid of (tx, ty, tw, th, objectness), the seed's grid loss, NMS, and
mAP@0.5 / COCO mAP@[.5:.95] on frames of the built-in videos.

`get_config()` is the seed's recipe: 416x416 (S = 26), batch 4, Adam 5e-5, ReduceLROnPlateau
(factor 0.5, patience 5) on validation mAP@0.5, early stopping after 10 evaluations without
improvement, the best checkpoint on validation mAP@0.5; an accelerator run. Variants:
  ``local``  a laptop-CPU run (<= 5 minutes): 128x128 frames (S = 8), half width.
  ``yolo``   the seed's recipe on a YOLO label tree: --config.data.data_dir=ROOT (ROOT/images/
             <split>/, ROOT/labels/<split>/*.txt).
  ``tiny``   the smallest run through every code path (tests).
Frames are split by video: no video has frames in two splits (the data layer refuses it).
"""

import os
import sys

import ml_collections

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import common  # noqa: E402

VARIANTS = ('', 'local', 'yolo', 'tiny')


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  variant = arg or 'full'
  if arg not in VARIANTS:
    raise ValueError(f'unknown variant {arg!r} of configs/detector.py; use one of {VARIANTS}')
  c = common.get_config('detector', 'detector', variant)
  c.requires_accelerator = variant in ('full', 'yolo')

  # ---- data: frames of the built-in videos with their person boxes (vad_jax.data.person_frames)
  c.data.source = 'person_frames'
  c.data.height = c.data.width = 416   # the seed's input size
  c.data.num_frames = 16               # frames of a synthetic video (rendered whole: short)
  c.data.frames_per_video = 4          # evenly spaced frames taken from each video
  c.data.num_train = 1000              # videos
  c.data.num_validation = 100
  c.data.num_test = 200
  c.data.normal_fraction = 0.4         # the videos' own classes (events move people around)
  c.data.class_imbalance = 4.0
  c.data.window = (6, 10)
  c.data.min_event_px = 1.5
  c.data.box_augment = 'geometric+photometric'  # none | geometric | geometric+photometric
                                       # (flip, zoom, shift move the boxes; vad_jax.data.box_augment)
  c.data.worker_threads = 4

  # ---- model (vad_jax.models.detector)
  c.model.dtype = 'auto'
  c.model.width_mult = 1.0             # channels 16 ... 512 (the seed's)
  c.model.grid = 0                     # 0: S = input size / 16 (26 at 416); > 0: resize to S x S
  c.model.bn_momentum = 0.9            # PyTorch's 0.1

  # ---- loss (vad_jax.losses.grid) and decoding (vad_jax.systems.detector)
  c.loss = ml_collections.ConfigDict()
  c.loss.lambda_coord = 5.0
  c.loss.lambda_noobj = 0.5
  c.detect = ml_collections.ConfigDict()
  c.detect.nms_iou = 0.5               # greedy NMS: IoU above this is suppressed
  c.detect.max_detections = 100        # boxes an image after NMS (COCO's maxDets)
  c.detect.pre_nms_topk = 300          # cells NMS considers (all 676 at S = 26 score ~ 0)
  c.detect.min_score = 0.001           # objectness below this is never a detection

  # ---- optimisation (the seed: Adam 5e-5, batch 4, 100 epochs, ReduceLROnPlateau 0.5 / 5,
  # early stopping 10, best on validation)
  c.batch_size = 4
  epochs = 100
  c.optim.name = 'adam'
  c.optim.lr = 5e-5
  c.optim.schedule = 'constant'
  c.optim.grad_clip = 0.0
  c.monitors.plateau = dict(metric='map50', mode='max', factor=0.5, patience=5,
                            stop_patience=10)

  # ---- evaluation: COCO mAP, precision / recall at the confidence threshold
  c.evals.detection = dict(score_threshold=0.5)
  c.best_metric = 'map50'
  c.eval_batch_size = 32
  c.log_every = 100

  if variant == 'yolo':
    c.data.source = 'yolo'
    c.data.data_dir = ''               # ROOT of images/<split>/ and labels/<split>/ (required)
    c.data.max_boxes = 50              # objects an image at most (more is an error)
    c.data.keep_classes = (0,)         # class ids that are people (COCO / YOLO: 0); others dropped
    c.data.class_names = ('person',)
    c.data.group_pattern = ''          # regex on a file stem whose group 1 names its video
                                       # (e.g. r'^(.*)_\d+$'): splits are checked and carved by it
    c.data.val_fraction = 0.1          # when images/val is absent: carved from train
    c.data.split_seed = 0
  elif variant == 'local':
    c.data.height = c.data.width = 128
    c.data.num_train = 1200
    c.data.num_validation = 100
    c.data.num_test = 200
    c.data.worker_threads = 2
    c.model.dtype = 'float32'
    c.model.width_mult = 0.5
    c.batch_size = 16
    epochs = 2.5
    c.optim.lr = 1e-3
    c.eval_batch_size = 64
    c.log_every = 50
    c.monitors.plateau = dict(metric='map50', mode='max', factor=0.5, patience=1,
                              stop_patience=3)
  elif variant == 'tiny':
    c.data.height = c.data.width = 64
    c.data.num_frames = 8
    c.data.frames_per_video = 2
    c.data.num_train = 16
    c.data.num_validation = 4
    c.data.num_test = 4
    c.data.window = (2, 4)
    c.data.worker_threads = 1
    c.model.dtype = 'float32'
    c.model.width_mult = 0.125
    c.batch_size = 8
    epochs = 2
    c.optim.lr = 1e-3
    c.eval_batch_size = 8
    c.log_every = 1

  # Epoch-based schedule (the seed counts epochs): steps = epochs x ceil(frames / batch).
  if c.data.source == 'person_frames':
    steps_per_epoch = -(-c.data.num_train * c.data.frames_per_video // c.batch_size)
  else:                                # unknown until the tree is read: 1000 steps an "epoch"
    steps_per_epoch = 1000
  c.num_steps = int(epochs * steps_per_epoch)
  c.eval_every = c.checkpoint_every = steps_per_epoch
  if variant == 'local':               # evaluate (and let the monitor act) twice an epoch
    c.eval_every = c.checkpoint_every = steps_per_epoch // 2
  return c
