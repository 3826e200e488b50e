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

  c.batch_size = 32              # examples a step, global (a system may count otherwise: see it)
  c.num_steps = 1000
  c.ema_decay = 0.0              # > 0: evaluate an exponential moving average of the variables

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
