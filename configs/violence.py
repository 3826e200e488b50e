"""Violence detector on feature sequences (seed 003, "hybrid optimal").

Dense 512 -> 3 BiLSTMs (96, 96 + residual, 64) with Keras dropout / recurrent dropout ->
attention pooling -> Dense 128 -> Dense 64 -> 2 classes; focal loss (gamma 3, alpha 0.25), L2
0.003 on kernels, AdamW 1e-3 with 5 warmup epochs + cosine, clip 1.0, batch 64, the per-class
accuracy monitor with automatic recovery. A training example is a clip of 20 feature vectors
of one video; the label is the video's (NonViolent / Violent).

Variants by argument:
  ''          the seed's recipe (150 epochs) on features of the built-in synthetic videos
  ``features``  your own feature sets: set data.{train,validation,test}_list (CSV `path,label`
              lines, `.npy` of [T, F] or [T, crops, F] per video) and data.class_names
  ``rwf2000``   RWF-2000 prepared by `python -m vad_jax.prepare rwf2000` (10 fps, 112x112;
              --config.data.data_dir=OUT), per-frame features from `data.extractor`
              ('descriptor', or 'keras:<EfficientNet .h5>' for ImageNet features) extracted
              once and cached beside the prepared data; the official val split is the test
              split, validation is carved from train (10%, per class, seeded)
  ``rwf2000_local``  the same prepared at 32x32, with the :local schedule (laptop CPU)
  ``local``   a laptop-CPU run on the built-in data, feature extraction included (minutes)
  ``tiny``    the smallest run through every code path (tests)
"""

import os
import sys

import ml_collections

# Loaded by path (ml_collections' --config=...): make this repository's `configs` importable
# from any working directory.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import common  # noqa: E402


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  variant = arg or 'full'
  if variant not in ('full', 'features', 'local', 'tiny', 'rwf2000', 'rwf2000_local'):
    raise ValueError(f"unknown variant {arg!r} of configs/violence.py; use '', 'features', "
                     "'local', 'tiny', 'rwf2000' or 'rwf2000_local'")
  c = common.get_config('violence', 'violence', variant)

  # ---- data: features of the built-in synthetic videos, extracted once and cached on disk in
  # the layout real feature sets have (vad_jax.extract.synthetic); or your lists ('features').
  c.data.source = 'synthetic_features'
  c.data.clip_len = 20                 # feature vectors a clip (seed: 20 frames)
  c.data.extractor = 'descriptor'      # descriptor | keras:<EfficientNet .h5> | run:<hybrid workdir>
  c.data.cache_dir = ''                # '' = ~/.cache/vad_jax/features
  c.data.height = 64
  c.data.width = 64
  c.data.num_frames = 64               # frames of a synthetic video
  c.data.num_train = 4000
  c.data.num_validation = 400
  c.data.num_test = 800
  c.data.window = (24, 48)             # the event's frames within a video
  c.data.min_event_px = 1.5
  c.data.violent_classes = ('Abuse', 'Assault', 'Fighting')
  c.data.violent_fraction = 0.5        # the seed's data is 50/50
  c.data.train_list = ''               # 'features' source: CSV lists
  c.data.validation_list = ''
  c.data.test_list = ''
  c.data.class_names = ('NonViolent', 'Violent')
  c.data.crops = 'mean'                # [T, crops, F] files: 'mean' of the crops or 'first'

  # ---- model (vad_jax.models.violence): the seed's "hybrid optimal" Keras model
  c.model.dtype = 'auto'               # bfloat16 on GPU/TPU, float32 on CPU
  c.model.compress = 512
  c.model.compress_dropout = 0.25
  c.model.lstm = (96, 96, 64)
  c.model.lstm_dropout = (0.35, 0.35, 0.30)
  c.model.recurrent_dropout = (0.20, 0.20, 0.15)
  c.model.residual = True
  c.model.dense = (128, 64)
  c.model.dense_dropout = (0.35, 0.25)
  c.model.bn_momentum = 0.99

  c.loss = ml_collections.ConfigDict()
  c.loss.focal_gamma = 3.0
  c.loss.focal_alpha = 0.25

  # ---- optimisation: batch 64, 150 epochs, 5 warmup epochs, cosine; AdamW lr 1e-3, clip 1.0,
  # Keras-style L2 0.003 on kernels (the seed names no decoupled weight decay).
  c.batch_size = 64
  epochs, warmup_epochs = 150, 5
  c.optim.name = 'adamw'
  c.optim.lr = 1e-3
  c.optim.weight_decay = 0.0
  c.optim.l2 = 0.003
  c.optim.grad_clip = 1.0

  # ---- evaluation and monitoring (every epoch, as the seed's Keras callbacks)
  c.evals.classification = dict(positive_class=1)
  c.best_metric = 'balanced_accuracy'
  c.monitors.class_gap = dict(warn=0.15, critical=0.25, lr_gap=0.20, lr_patience=5,
                              lr_factor=0.5, stop_gap=0.30, stop_patience=3)
  c.eval_batch_size = 256
  c.log_every = 50

  if variant == 'features':
    c.data.source = 'features'
  elif variant.startswith('rwf2000'):
    local = variant.endswith('_local')
    common.prepared_data(c, 'rwf2000', fps=10.0, height=32 if local else 112,
                         width=32 if local else 112)
    c.data.source = 'prepared_features'
    c.data.clip_len = 20               # RWF-2000 clips are <= 5 s: <= 50 frames at 10 fps
    c.data.num_train = 1440            # 1,600 training clips minus the 10% validation carve:
                                       # sets the epoch-based schedule below
    if local:
      epochs, warmup_epochs = 30, 3
      c.model.bn_momentum = 0.9
      c.data.worker_threads = 2
      c.log_every = 25
  elif variant == 'local':
    c.data.height = c.data.width = 32
    c.data.num_train = 2000
    c.data.num_validation = 400
    c.data.num_test = 600
    c.data.window = (16, 32)
    c.data.worker_threads = 2
    epochs, warmup_epochs = 30, 3
    c.model.bn_momentum = 0.9          # ~1000 steps: running statistics must catch up (0.99
                                       # needs ~900 steps to forget its initial variance of 1)
    c.log_every = 25
  elif variant == 'tiny':
    c.data.height = c.data.width = 32
    c.data.num_frames = 24
    c.data.clip_len = 8
    c.data.num_train = 32
    c.data.num_validation = 16
    c.data.num_test = 16
    c.data.window = (6, 12)
    c.data.worker_threads = 1
    c.model.compress = 16
    c.model.lstm = (8, 8, 6)
    c.model.dense = (8, 6)
    c.batch_size = 16                 # 2 per fake test device
    epochs, warmup_epochs = 2, 1
    c.eval_batch_size = 16
    c.log_every = 1

  # Epoch-based schedule (the seed counts epochs): steps = epochs x ceil(num_train / batch).
  steps_per_epoch = -(-c.data.num_train // c.batch_size)
  c.num_steps = epochs * steps_per_epoch
  c.optim.warmup_steps = warmup_epochs * steps_per_epoch
  c.monitors.class_gap.start_step = c.optim.warmup_steps   # act only after the warmup
  c.eval_every = c.checkpoint_every = steps_per_epoch
  return c
