"""Hybrid detector (seed 000): EfficientNet-B0 -> BiLSTM -> relative-position Transformer -> heads.

`get_config()` is the seed's full size (224x224, 16-frame clips, 64 clips a step) for GPU/TPU.
Variants by argument:
  ``local``            a laptop-CPU run that finishes in minutes on the built-in synthetic data.
  ``tiny``             the smallest thing that exercises every code path (tests, smoke runs).
  ``ucf_crime``        the full model on UCF-Crime prepared by `python -m vad_jax.prepare
                       ucf_crime` (--config.data.data_dir=OUT); GPU/TPU.
  ``ucf_crime_local``  the :local model on UCF-Crime prepared at 32x32 (laptop CPU).
  ``features``         BiLSTM + Transformer + heads on published snippet features (RTFM /
                       UR-DMU / VadCLIP / C3D lists; --config.data.train_list=...
                       --config.data.test_list=... --config.data.gt=... or .annotations=...).
  ``features_local``   the same, CPU-sized.
Real-data variants choose the checkpoint on `video_auc`: their validation split is carved from
weakly labelled training videos, which have no per-frame truth.
"""

import os
import sys

import ml_collections

# Loaded by path (ml_collections' --config=...): make this repository's `configs` importable
# from any working directory.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import common  # noqa: E402
from vad_jax.classes import CLASS_NAMES  # noqa: E402


VARIANTS = ('', 'local', 'tiny', 'ucf_crime', 'ucf_crime_local', 'features', 'features_local')


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  variant = arg or 'full'
  if arg not in VARIANTS:
    raise ValueError(f'unknown variant {arg!r} of configs/hybrid.py; use one of {VARIANTS}')
  c = common.get_config('hybrid', 'hybrid', variant)
  c.requires_accelerator = variant in ('full', 'ucf_crime', 'features')

  # ---- data: the built-in procedural surveillance videos (vad_jax.data.synthetic).
  common.synthetic_videos(c)       # K*T + horizon frames a training video (see the system)

  # ---- model
  c.model.num_classes = 14
  c.model.dtype = 'bfloat16'     # compute dtype
  c.model.trunk = ml_collections.ConfigDict()
  c.model.trunk.kind = 'efficientnet'    # 'none': the input is already features (variant features)
  c.model.trunk.width_mult = 1.0
  c.model.trunk.depth_mult = 1.0
  c.model.trunk.padding = 'symmetric'    # 'symmetric' (PyTorch/timm) or 'same' (TF/Keras)
  c.model.trunk.depthwise_impl = 'auto'  # 'auto': shifted-sum on CPU, XLA grouped conv elsewhere
  c.model.trunk.conv_impl = 'auto'       # 'auto': 1x1 / stem convs as matmuls on CPU, XLA conv elsewhere
  c.model.trunk.drop_connect_rate = 0.2
  c.model.trunk.bn_momentum = 0.99       # running-statistics decay (Keras default)
  c.model.trunk.frozen_stages = 2        # stem + first 2 block stages frozen (seed), only when
                                         # starting from weights (a random trunk is not frozen)
  c.model.trunk.weights = ''             # optional Keras EfficientNet weights file (.h5) to start from
  c.model.input = 'rgb'                  # trunk input: 'rgb' | 'foreground' | 'motion' (README)
  c.model.lstm_hidden = 256             # per direction; the Transformer width is 2 * lstm_hidden
  c.model.lstm_layers = 2
  c.model.lstm_dropout = 0.5
  c.model.num_heads = 8
  c.model.ff_dim = 1024
  c.model.transformer_layers = 2
  c.model.transformer_dropout = 0.3
  c.model.head_hidden = 256
  c.model.head_dropout = 0.5
  c.model.reg_dim = 256
  c.model.vae_latent = 64
  c.model.vae_dropout = 0.3
  c.model.horizon = 4                    # regression predicts the features of frame t + horizon

  # ---- loss
  c.loss = ml_collections.ConfigDict()
  c.loss.w_reg = 1.0
  c.loss.w_focal = 0.5
  c.loss.w_mil = 0.3
  c.loss.w_vae = 0.3
  c.loss.smooth_l1_beta = 1.0
  c.loss.focal_gamma = 2.0
  c.loss.mil_margin = 0.5
  c.loss.mil_lambda_smooth = 8e-5
  c.loss.mil_lambda_sparse = 8e-5
  c.loss.vae_beta = 0.01

  # ---- optimisation
  c.batch_size = 64              # clips a step, global: batch_size // clips_per_video videos
  c.num_steps = 20_000
  c.optim.name = 'adamw'
  c.optim.lr = 3e-4
  c.optim.warmup_steps = 1000
  c.optim.weight_decay = 1e-2
  c.optim.grad_clip = 1.0

  # ---- evaluation
  c.evals.frame_anomaly = dict(num_plot_videos=6)
  c.best_metric = 'frame_auc'
  c.eval_batch_size = 8          # videos a prediction step
  c.eval_every = 1000
  c.checkpoint_every = 1000

  if variant in ('local', 'ucf_crime_local'):
    common.synthetic_videos_local(c)
    c.model.dtype = 'float32'
    c.model.trunk.width_mult = 0.25
    c.model.trunk.depth_mult = 0.25
    c.model.trunk.frozen_stages = 0
    c.model.trunk.drop_connect_rate = 0.0
    c.model.trunk.bn_momentum = 0.9        # short run: statistics must track fast-moving weights
    c.model.input = 'motion'               # background-subtracted frame + frame difference
    c.model.lstm_hidden = 64
    c.model.lstm_dropout = 0.0             # < 1 epoch of procedural videos: nothing to overfit,
    c.model.transformer_dropout = 0.0      # and dropout slows a 340-step run (test AUC 0.825 ->
    c.model.head_dropout = 0.0             # 0.860 at 340 steps without it)
    c.model.num_heads = 4
    c.model.ff_dim = 256
    c.model.head_hidden = 128
    c.model.reg_dim = 64
    c.model.vae_latent = 16
    c.batch_size = 32
    c.num_steps = 500                # 3.5-4 min on 2 cores, compile included (README, Status)
    c.optim.lr = 2e-3
    c.optim.warmup_steps = 50
    c.loss.w_focal = 1.0             # the score's head gets more of a short budget (seed: 0.5)
    c.log_every = 25
    c.eval_every = 250
    c.checkpoint_every = 250
    c.eval_batch_size = 16
    c.eval_tta = 'hflip,shift,hflip+shift'   # 4 views: validation AUC +0.03 on one checkpoint
  elif variant == 'tiny':
    common.synthetic_videos_tiny(c)
    c.model.dtype = 'float32'
    c.model.trunk.width_mult = 0.1
    c.model.trunk.depth_mult = 0.1
    c.model.trunk.frozen_stages = 1
    c.model.trunk.depthwise_impl = 'xla'   # compiles faster; at these sizes speed is moot
    c.model.lstm_hidden = 8
    c.model.lstm_layers = 2
    c.model.num_heads = 2
    c.model.ff_dim = 32
    c.model.transformer_layers = 1
    c.model.head_hidden = 16
    c.model.reg_dim = 8
    c.model.vae_latent = 4
    c.model.horizon = 2
    c.batch_size = 16                       # 8 videos: one per fake test device
    c.num_steps = 4
    c.ema_decay = 0.5                       # exercise the parameter average in the trainer tests
    c.optim.warmup_steps = 1
    c.log_every = 1
    c.eval_every = 2
    c.checkpoint_every = 2
    c.keep_checkpoints = 2
    c.eval_batch_size = 4
    c.eval_tta = 'hflip+shift'              # exercise views in the trainer tests
    c.data.augment = 'hflip,shift'
    c.evals.frame_anomaly.num_plot_videos = 2

  if variant.startswith('ucf_crime'):
    # UCF-Crime prepared once (README: Real data). 10 fps keeps every third frame of the 30 fps
    # videos; a training example is K*T + horizon consecutive frames from a random start.
    local = variant.endswith('_local')
    common.prepared_data(c, 'ucf_crime', fps=10.0, height=32 if local else 224,
                         width=32 if local else 224)
    c.data.augment = 'hflip,shift' if local else 'hflip'
    c.best_metric = 'video_auc'
    c.data.eval_window = 128 if local else 256   # untrimmed videos, scored window by window
    c.eval_batch_size = 8
    if local:
      c.eval_tta = ''
      c.data.eval_stride = 8
  elif variant.startswith('features'):
    # The temporal model on published snippet features: a training video is binned into
    # K*T = 32 segments (4 clips of 8), a test video scored snippet by snippet (stride 1).
    local = variant.endswith('_local')
    c.system = 'hybrid_features'
    common.published_data(c, CLASS_NAMES)
    c.model.trunk.kind = 'none'
    c.model.dtype = 'auto'
    c.data.clip_len = 8
    c.data.clips_per_video = 4
    c.data.eval_stride = 1
    c.data.eval_window = 256         # snippets; the longest UCF-Crime test video has ~2,000+
    c.data.augment = ''
    c.model.horizon = 1
    c.eval_tta = ''
    c.best_metric = 'video_auc'
    c.batch_size = 128               # clips: 32 videos a step
    c.num_steps = 5000
    c.optim.lr = 3e-4
    c.optim.warmup_steps = 200
    c.eval_every = c.checkpoint_every = 500
    c.eval_batch_size = 16
    if local:
      c.model.lstm_hidden = 64
      c.model.num_heads = 4
      c.model.ff_dim = 256
      c.model.transformer_layers = 1
      c.model.head_hidden = 128
      c.model.reg_dim = 64
      c.model.vae_latent = 16
      c.model.dtype = 'float32'
      c.batch_size = 64
      c.num_steps = 300
      c.optim.lr = 1e-3
      c.optim.warmup_steps = 30
      c.log_every = 25
      c.eval_every = c.checkpoint_every = 100
      c.data.worker_threads = 2
  return c
