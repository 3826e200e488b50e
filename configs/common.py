"""Trainer keys every config shares (vad_jax.train); a system's config sets what differs.

  c = common.get_config(name='hybrid', system='hybrid', variant='local')
"""

import ml_collections


def get_config(name: str, system: str, variant: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.name = name                  # the config file, configs/<name>.py (for messages)
  c.variant = variant
  c.system = system              # the System the trainer runs (vad_jax.systems)
  c.seed = 0                     # data draw, initialisation and training randomness
  c.requires_accelerator = False  # True: refuse to start on a CPU-only machine

  c.data = ml_collections.ConfigDict()
  c.data.source = ''             # vad_jax.data.sources: synthetic | features | synthetic_features
  c.data.augment = ''            # training views of videos, per example: 'hflip', 'shift'
  c.data.worker_threads = 4
  c.data.sampling_power = 0.0    # training draws: example weight ∝ n_class^-power (0 = shuffle
                                 # each example once an epoch; 1 = every class equally often)

  c.model = ml_collections.ConfigDict()
  c.model.dtype = 'float32'      # compute dtype: float32 | bfloat16 | float16 | auto (bf16 off CPU)
  c.model.param_dtype = 'float32'

  # ---- optimizer (vad_jax.train.optim)
  c.optim = ml_collections.ConfigDict()
  c.optim.name = 'adamw'         # adamw | adam | sgd
  c.optim.lr = 1e-3
  c.optim.schedule = 'warmup_cosine'   # warmup_cosine | constant | reduce_on_plateau (train loss)
  c.optim.warmup_steps = 0
  c.optim.end_lr_fraction = 0.01  # cosine ends at lr * this
  c.optim.weight_decay = 0.0      # decoupled (adamw), on parameters with ndim > 1
  c.optim.l2 = 0.0                # Keras-style L2: l2 * sum(w^2) of parameters matching l2_params
  c.optim.l2_params = r'(^|/)kernel$'
  c.optim.grad_clip = 1.0         # global norm; 0 = off
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.momentum = 0.0          # sgd
  c.optim.plateau = ml_collections.ConfigDict(dict(
      factor=0.5, patience=5, cooldown=0, rtol=1e-4, accumulation_size=1))
  c.optim.sam_rho = 0.0           # > 0: sharpness-aware minimisation (optax.contrib.sam), radius rho

  # ---- training tricks the step applies for any system (vad_jax.train.step)
  c.mixup = ml_collections.ConfigDict()   # on device, the step's RNG (vad_jax.data.mixing)
  c.mixup.mixup_alpha = 0.0       # > 0: mixup, lam ~ Beta(alpha, alpha)
  c.mixup.cutmix_alpha = 0.0      # > 0: CutMix (one box a batch, lam = the area kept)
  c.mixup.switch_prob = 0.5       # both > 0: P(CutMix) for a batch
  c.mixup.prob = 1.0              # P(a batch is mixed at all)
  c.swa = ml_collections.ConfigDict()     # stochastic weight averaging (vad_jax.train.swa)
  c.swa.start_step = 0            # > 0: average the parameters from this step on (0 = off)
  c.swa.every = 1                 # steps between the snapshots averaged (equal weights)
  c.swa.stat_batches = 8          # training batches that recompute BatchNorm statistics of the
                                  # average before each evaluation

  c.batch_size = 32              # examples a step, global (a system may count otherwise: see it)
  c.num_steps = 1000
  c.ema_decay = 0.0              # > 0: evaluate an exponential moving average of the variables
  c.ema_recompute_stats = False  # True: before each evaluation, recompute the EMA weights'
                                 # BatchNorm statistics (as SWA does, swa.stat_batches batches)
                                 # instead of averaging the raw model's

  # ---- mesh: axis sizes, -1 = all remaining devices. The batch is sharded over 'data'.
  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1

  # ---- evaluation (vad_jax.evaluate.evaluators) and monitors (vad_jax.train.monitors)
  c.evals = ml_collections.ConfigDict()   # {evaluator name: {kwargs}}
  c.best_metric = ''             # validation metric that selects the tested checkpoint
  c.best_mode = 'max'            # max | min
  c.monitors = ml_collections.ConfigDict()  # {monitor name: {kwargs}}
  c.eval_tta = ''                # test-time views averaged when predicting (videos only)
  c.eval_batch_size = 8          # examples a prediction step

  # ---- bookkeeping
  c.log_every = 50
  c.eval_every = 500
  c.checkpoint_every = 500
  c.keep_checkpoints = 3
  return c


def synthetic_videos(c: ml_collections.ConfigDict) -> None:
  """Keys of the 'synthetic' source (the built-in procedural videos, vad_jax.data.synthetic) for
  clip-based video systems, at the seeds' full size; variants override what differs."""
  c.data.source = 'synthetic'
  c.data.height = 224
  c.data.width = 224
  c.data.clip_len = 16           # T frames a clip (one sequence through the temporal model)
  c.data.clips_per_video = 4     # K clips a training bag (MIL)
  c.data.eval_frames = 128       # frames of an untrimmed validation/test video
  c.data.eval_stride = 8         # frames between clip starts when scoring (<= clip_len; see README)
  c.data.eval_window = 0         # > 0: score long videos in windows of this many frames
                                 # (clip_len + a multiple of eval_stride; README: Real data)
  c.data.num_train = 1600
  c.data.num_validation = 160
  c.data.num_test = 290
  c.data.normal_fraction = 0.4   # normal is the dominant class; the rest spread over 13 anomaly classes
  c.data.class_imbalance = 4.0   # most / least frequent anomaly class
  c.data.window = (24, 48)       # anomaly window length, frames
  c.data.min_event_px = 1.5      # small event details are drawn at least this many pixels big


def synthetic_videos_local(c: ml_collections.ConfigDict) -> None:
  """The laptop-CPU size of `synthetic_videos` (the :local variants of the clip-based video
  systems): 32x32, 8-frame clips scored every 4 frames, 4000 procedural training videos."""
  c.data.height = c.data.width = 32
  c.data.clip_len = 8
  c.data.clips_per_video = 4
  c.data.eval_frames = 64
  c.data.eval_stride = 4
  c.data.num_train = 4000          # procedural: more distinct videos cost nothing to store
  c.data.num_validation = 96       # enough videos per class to select a checkpoint on
  c.data.num_test = 200
  c.data.window = (10, 16)         # < half of a 36-frame training video (background = median)
  c.data.worker_threads = 2
  c.data.augment = 'hflip,shift'   # per-video mirror and 1-pixel shift (README: Views)


def synthetic_videos_tiny(c: ml_collections.ConfigDict) -> None:
  """The smallest `synthetic_videos` that reaches every code path (the tests' :tiny variants)."""
  c.data.height = c.data.width = 32
  c.data.clip_len = 4
  c.data.clips_per_video = 2
  c.data.eval_frames = 16
  c.data.eval_stride = 2
  c.data.num_train = 16
  c.data.num_validation = 4
  c.data.num_test = 4
  c.data.window = (4, 6)
  c.data.worker_threads = 1


def prepared_data(c: ml_collections.ConfigDict, dataset: str, fps: float, height: int,
                  width: int) -> None:
  """Keys of the 'prepared' source: a dataset made by `python -m vad_jax.prepare DATASET
  --manual_dir=RAW --data_dir=OUT`; fps/height/width/val_fraction/split_seed must be the ones it
  was prepared with (they name the prepared folder)."""
  c.data.source = 'prepared'
  c.data.dataset = dataset       # ucf_crime | ucf_crime_frames | rwf2000
  c.data.data_dir = ''           # the prepare command's --data_dir (required)
  c.data.fps = fps               # 0 = every source frame
  c.data.height = height
  c.data.width = width
  c.data.val_fraction = 0.1      # training videos carved into validation, per class
  c.data.split_seed = 0          # seed of that carve
  c.data.encoding = 'jpeg'


def published_data(c: ml_collections.ConfigDict, class_names) -> None:
  """Keys of the 'published_features' source (RTFM / UR-DMU / VadCLIP / C3D feature lists)."""
  c.data.source = 'published_features'
  c.data.train_list = ''         # list file of the training videos (required)
  c.data.test_list = ''          # list file of the test videos (required)
  c.data.list_format = 'auto'    # auto | rtfm | crops | csv
  c.data.feature_root = ''       # where the .npy files are, when the lists' paths are stale
  c.data.gt = ''                 # per-frame ground truth of the test list (RTFM gt-*.npy)
  c.data.annotations = ''        # ... or built from this annotation file when gt is ''
  c.data.annotation_format = 'ucf'   # ucf (Temporal_Anomaly_Annotation...) | xd (XD-Violence)
  c.data.class_names = tuple(class_names)
  c.data.snippet_frames = 16     # frames one feature vector covers
  c.data.bins = 'rtfm'           # MIL segments of a training video: rtfm | sultani
  c.data.train_crop = 'random'   # random | mean: which crop a training example uses
  c.data.feature_dim = 0         # expected feature width (0 = whatever the first file has)
  c.data.val_fraction = 0.1      # training videos carved into validation, per class
  c.data.split_seed = 0
