"""Features of the built-in synthetic videos, extracted on first use and cached on disk in the
layout of users' real feature sets (the 'features' source reads both alike).

  <cache_dir or ~/.cache/vad_jax/features>/<key>/
    <split>.csv               `path,label` lines: `<split>/<index:05d>.npy,NonViolent|Violent`
    <split>/<index:05d>.npy   float32 [num_frames, F]: one feature vector a frame of one video
    source_labels.npz         {split: int32 [videos]} each video's synthetic class (CLASS_NAMES),
                              for analysis only (which source classes a model confuses)
    meta.json                 the inputs the key hashes, the feature size, per-class counts

`key` is a short hash of everything that changes the files (the synthetic spec of every split,
the violent classes, the extractor's fingerprint, VERSION). The directory is built under
`<key>.tmp-<pid>` and renamed into place, so a cache directory is complete or absent; a second
call, or a process that finds another one's finished build, reuses it.

Extractors, by name:
  'descriptor'           vad_jax.data.descriptors.motion_descriptor: no weights, F = 148
  'keras:<file.h5>'      a Keras EfficientNetB0..B7 weights file (ImageNet RGB features): the
                         pooled trunk output per frame, F = 1280 for B0
  'run:<workdir>'        the trunk of a trained hybrid run (<workdir>/config.json, the best
                         checkpoint under <workdir>/best), fed its own `model.input`
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np
from absl import logging

from vad_jax.classes import CLASS_NAMES
from vad_jax.data import descriptors
from vad_jax.data.synthetic import SyntheticSpec, SyntheticVideos, class_probabilities

VERSION = 1                               # bump when an extractor's output changes
SPLITS = ('train', 'validation', 'test')
VIOLENCE_CLASSES = ('NonViolent', 'Violent')
# Person-on-person physical violence: the events where one person's body acts on another's
# (Fighting: two people trading blows side by side; Assault: a run-up and a shove; Abuse:
# repeated lunges at a stationary victim). Robbery is here a chase with no contact, Arrest a
# controlled approach by uniformed officers, Shooting a weapon fired at a distance (flashes and
# fleeing people): none is the fight that violence datasets (RWF-2000, Hockey Fight) label.
VIOLENT_CLASSES = ('Abuse', 'Assault', 'Fighting')
CHUNK = 16                                # videos a pool job
POOL_MIN_VIDEOS = 256                     # fewer: a plain loop (a spawned pool starts in ~1 s)


def default_cache_dir() -> str:
  return os.path.join(os.path.expanduser('~'), '.cache', 'vad_jax', 'features')


# ----------------------------------------------------------------------------- the videos
def violence_class_probs(violent_classes=VIOLENT_CLASSES, violent_fraction: float = 0.5,
                         base: SyntheticSpec = SyntheticSpec()) -> tuple[float, ...]:
  """P(label) over CLASS_NAMES: `violent_fraction` spread over the violent classes and the rest
  over Normal and the other anomaly classes, each group in proportion to `base`'s distribution."""
  bad = [c for c in violent_classes if c not in CLASS_NAMES[1:]]
  if bad or not violent_classes:
    raise ValueError(f'violent_classes must be anomaly classes of {CLASS_NAMES[1:]}, got '
                     f'{tuple(violent_classes)}')
  if not 0.0 <= violent_fraction <= 1.0:
    raise ValueError(f'violent_fraction must be in [0, 1], got {violent_fraction}')
  p = class_probabilities(base)
  v = np.isin(np.array(CLASS_NAMES), list(violent_classes))
  p[v] *= violent_fraction / p[v].sum()
  p[~v] *= (1.0 - violent_fraction) / p[~v].sum()
  return tuple(float(x) for x in p)


def split_specs(data_cfg, seed: int) -> dict[str, SyntheticSpec]:
  """The SyntheticSpec of each split described by `data_cfg` (see synthetic_feature_lists)."""
  default = SyntheticSpec()
  base = SyntheticSpec(normal_fraction=data_cfg.get('normal_fraction', default.normal_fraction),
                       class_imbalance=data_cfg.get('class_imbalance', default.class_imbalance))
  probs = violence_class_probs(tuple(data_cfg.get('violent_classes', VIOLENT_CLASSES)),
                               float(data_cfg.violent_fraction), base)
  counts = {'train': data_cfg.num_train, 'validation': data_cfg.num_validation,
            'test': data_cfg.num_test}
  return {s: SyntheticSpec(height=int(data_cfg.height), width=int(data_cfg.width),
                           num_frames=int(data_cfg.num_frames), num_videos=int(counts[s]),
                           window=tuple(int(w) for w in data_cfg.window),
                           min_event_px=float(data_cfg.min_event_px), seed=int(seed),
                           class_probs=probs)
          for s in SPLITS}


# ----------------------------------------------------------------------------- extractors
class DescriptorExtractor:
  """motion_descriptor per video (numpy; picklable, so pool workers run it)."""
  parallel = True
  batch = 1

  def fingerprint(self) -> str:
    return f'descriptor/grid{descriptors.GRID}/top{descriptors.TOP}/F{descriptors.FEATURE_DIM}'

  def __call__(self, videos: np.ndarray) -> np.ndarray:
    """uint8 [B, N, H, W, 3] -> float32 [B, N, F]."""
    return np.stack([descriptors.motion_descriptor(v) for v in videos])


class TrunkExtractor:
  """An EfficientNet trunk applied to every frame under jax.jit: uint8 [B, N, H, W, 3] ->
  float32 [B, N, F] (inputs per `vad_jax.models.inputs.trunk_inputs(mode)`). The weights are
  loaded on the first call: a cached feature set needs only the fingerprint (file contents)."""
  parallel = False
  batch = 8                               # videos a jitted call (the last call is padded)

  def __init__(self, load, fingerprint: str):
    """load() -> (EfficientNet module, its variables, model.input mode)."""
    self._load, self._fingerprint, self._fn, self._variables = load, fingerprint, None, None

  def fingerprint(self) -> str:
    return self._fingerprint

  def __call__(self, videos: np.ndarray) -> np.ndarray:
    import jax
    from vad_jax.models.inputs import trunk_inputs
    if self._fn is None:
      model, self._variables, mode = self._load()

      def apply(variables, video):
        b, n, h, w, _ = video.shape
        x = trunk_inputs(video, mode)
        return model.apply(variables, x.reshape(b * n, h, w, x.shape[-1]),
                           train=False).reshape(b, n, -1)
      self._fn = jax.jit(apply)
    b = len(videos)
    if b < self.batch:
      videos = np.concatenate([videos, np.repeat(videos[-1:], self.batch - b, 0)])
    return np.asarray(self._fn(self._variables, videos), np.float32)[:b]


def _file_digest(*paths: str) -> str:
  h = hashlib.sha256()
  for p in paths:
    with open(p, 'rb') as f:
      for block in iter(lambda: f.read(1 << 20), b''):
        h.update(block)
  return h.hexdigest()[:16]


def _keras_extractor(path: str) -> TrunkExtractor:
  if not os.path.isfile(path):
    raise FileNotFoundError(f'extractor keras:{path}: no such Keras weights file')

  def load():
    from vad_jax.convert.keras import efficientnet_from_keras
    from vad_jax.models.efficientnet import (BLOCKS_B0, VARIANTS, EfficientNet, round_filters,
                                             round_repeats)
    variables = efficientnet_from_keras(path)
    params = variables['params']
    stem = params['stem']['conv']['kernel'].shape[-1]
    blocks = [len(params[f'stage{i}']) for i in range(len(BLOCKS_B0))]
    for w, d, _ in VARIANTS.values():
      if round_filters(32, w) == stem and blocks == [round_repeats(b[5], d) for b in BLOCKS_B0]:
        return EfficientNet(width_mult=w, depth_mult=d, padding='same'), variables, 'rgb'
    raise ValueError(f'{path}: stem width {stem} and blocks {blocks} match no EfficientNetB0..B7')
  return TrunkExtractor(load, f'keras/{_file_digest(path)}')


def _restore_trunk(state_dir: str) -> dict:
  """{'params', 'batch_stats'} of the trunk in a TrainState checkpoint, restored as numpy."""
  import jax
  import orbax.checkpoint as ocp
  with ocp.PyTreeCheckpointer() as ckptr:      # no target: every array comes back as numpy
    meta = ckptr.metadata(state_dir).item_metadata
    args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                        getattr(meta, 'tree', meta))
    state = ckptr.restore(state_dir, restore_args=args)
  # The variables evaluation used (TrainState.eval_variables): the averages when EMA was kept.
  # Older checkpoints hold batch_stats / ema_params at the top level.
  ema = state.get('ema') or {}
  params = ema.get('params') or state.get('ema_params') or state['params']
  stats = (ema.get('model_state') or state.get('model_state') or state).get('batch_stats')
  if not isinstance(params, dict) or 'trunk' not in params or not stats or 'trunk' not in stats:
    raise ValueError(f'{state_dir}: no params/batch_stats of a trunk in the checkpoint')
  return {'params': params['trunk'], 'batch_stats': stats['trunk']}


def _run_extractor(workdir: str) -> TrunkExtractor:
  workdir = os.path.abspath(workdir)
  cfg_path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(cfg_path):
    raise FileNotFoundError(f'extractor run:{workdir}: no config.json (not a training workdir)')
  with open(cfg_path) as f:
    cfg = json.load(f)
  m = cfg.get('model', {})
  tr = m.get('trunk')
  if not isinstance(tr, dict):
    raise ValueError(f'{cfg_path}: no model.trunk (system {cfg.get("system")!r} has no per-frame '
                     'trunk to extract with)')
  from vad_jax.train.trained import best_step
  step = best_step(workdir, cfg.get('best_metric'), cfg.get('best_mode', 'max'))
  state_dir = os.path.join(workdir, 'best', str(step), 'state')

  def load():
    from vad_jax.models.efficientnet import EfficientNet
    model = EfficientNet(width_mult=tr['width_mult'], depth_mult=tr['depth_mult'],
                         padding=tr['padding'], depthwise_impl=tr.get('depthwise_impl', 'auto'),
                         conv_impl=tr.get('conv_impl', 'auto'),
                         bn_momentum=tr.get('bn_momentum', 0.99), drop_connect_rate=0.0)
    return model, _restore_trunk(state_dir), m.get('input', 'rgb')
  files = sorted(os.path.join(d, f) for d, _, fs in os.walk(state_dir) for f in fs)
  return TrunkExtractor(load, f'run/{_file_digest(cfg_path, *files)}')


def make_extractor(name: str):
  """'descriptor' | 'keras:<weights .h5>' | 'run:<hybrid workdir>' -> an extractor."""
  kind, _, arg = name.partition(':')
  if kind == 'descriptor' and not arg:
    return DescriptorExtractor()
  if kind == 'keras' and arg:
    return _keras_extractor(os.path.expanduser(arg))
  if kind == 'run' and arg:
    return _run_extractor(os.path.expanduser(arg))
  raise ValueError(f"unknown extractor {name!r}: use 'descriptor', 'keras:<EfficientNet .h5>' "
                   "or 'run:<hybrid workdir>'")


# ----------------------------------------------------------------------------- the cache
def _extract(job) -> tuple[int, list[int], int]:
  """Renders videos [start, stop) of a split, writes their features; -> (start, labels, F)."""
  extractor, spec, split, start, stop, out_dir = job
  ds = SyntheticVideos(spec, split)
  labels, dim = [], 0
  for a in range(start, stop, extractor.batch):
    examples = [ds[i] for i in range(a, min(a + extractor.batch, stop))]
    feats = extractor(np.stack([e['frames'] for e in examples]))
    for e, x in zip(examples, feats):
      np.save(os.path.join(out_dir, f'{int(e["index"]):05d}.npy'), x)
      labels.append(int(e['label']))
    dim = feats.shape[-1]
  return start, labels, dim


def _build(tmp: str, specs: dict, extractor, violent: tuple, workers: int, meta: dict) -> None:
  total = sum(s.num_videos for s in specs.values())
  every = max(1, total // 10)
  done, next_log, t0 = 0, every, time.perf_counter()
  jobs = [(extractor, spec, split, a, min(a + CHUNK, spec.num_videos), os.path.join(tmp, split))
          for split, spec in specs.items() for a in range(0, spec.num_videos, CHUNK)]
  for split in specs:
    os.makedirs(os.path.join(tmp, split))
  labels = {split: np.zeros(spec.num_videos, np.int32) for split, spec in specs.items()}
  pool = None
  workers = min(workers, len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
                else os.cpu_count() or 1)
  if extractor.parallel and workers > 1 and total >= POOL_MIN_VIDEOS:
    # spawn: the caller may hold JAX's threads, which a forked child would inherit broken. A
    # worker that dies (e.g. a script without `if __name__ == '__main__':`) raises
    # BrokenProcessPool here instead of hanging.
    pool = ProcessPoolExecutor(workers, multiprocessing.get_context('spawn'))
  try:
    results = pool.map(_extract, jobs) if pool else map(_extract, jobs)
    for job, (start, got, dim) in zip(jobs, results):
      labels[job[2]][start:start + len(got)] = got
      meta['feature_dim'] = dim
      done += len(got)
      if done >= next_log or done == total:
        rate = done / max(time.perf_counter() - t0, 1e-9)
        logging.info('extracted %d/%d videos (%d%%), %.0f videos/s, %.0f s left', done, total,
                     100 * done // total, rate, (total - done) / rate)
        next_log += every
  except BrokenProcessPool as e:
    raise RuntimeError('a feature-extraction worker died; a script that extracts must guard its '
                       "entry point with `if __name__ == '__main__':` (workers are spawned), or "
                       'pass workers=1') from e
  finally:
    if pool:
      pool.shutdown(wait=True, cancel_futures=True)
  v = np.isin(np.array(CLASS_NAMES), list(violent))
  for split, lab in labels.items():
    with open(os.path.join(tmp, f'{split}.csv'), 'w') as f:
      f.write('path,label\n')
      f.writelines(f'{split}/{i:05d}.npy,{VIOLENCE_CLASSES[int(v[c])]}\n'
                   for i, c in enumerate(lab))
    meta['class_counts'][split] = {CLASS_NAMES[c]: int(n) for c, n in
                                   zip(*np.unique(lab, return_counts=True))}
  np.savez(os.path.join(tmp, 'source_labels.npz'), **labels)
  meta['seconds'] = round(time.perf_counter() - t0, 2)
  with open(os.path.join(tmp, 'meta.json'), 'w') as f:
    json.dump(meta, f, indent=2)


def synthetic_feature_lists(data_cfg, seed: int, extractor: str = 'descriptor',
                            cache_dir: str = '', workers: int | None = None) -> dict[str, str]:
  """{split: path of its `path,label` list} of the built-in videos' features (built once).

  data_cfg (ConfigDict): height, width, num_frames (frames a video), num_train, num_validation,
  num_test, window (anomaly window min/max frames), min_event_px, violent_classes (default
  VIOLENT_CLASSES), violent_fraction (P(a video is of a violent class); the rest are Normal and
  the other anomaly classes in the synthetic default proportions). Labels: VIOLENCE_CLASSES.
  workers: processes running the numpy descriptor (None: data_cfg.extract_workers, default 2;
  1, or fewer than POOL_MIN_VIDEOS videos: a plain loop). Trunk extractors run in this process.
  """
  if workers is None:
    workers = int(data_cfg.get('extract_workers', 2))
  specs = split_specs(data_cfg, seed)
  violent = tuple(data_cfg.get('violent_classes', VIOLENT_CLASSES))
  ex = make_extractor(extractor)
  meta = {'version': VERSION, 'extractor': ex.fingerprint(), 'violent_classes': list(violent),
          'specs': {s: dataclasses.asdict(spec) for s, spec in specs.items()}}
  key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
  root = os.path.abspath(os.path.expanduser(cache_dir or default_cache_dir()))
  final = os.path.join(root, key)
  lists = {s: os.path.join(final, f'{s}.csv') for s in SPLITS}
  if os.path.isdir(final):
    return lists
  total = sum(s.num_videos for s in specs.values())
  logging.info('extracting %s features of %d synthetic videos (%dx%d, %d frames; seed %d) into %s',
               extractor, total, specs['train'].height, specs['train'].width,
               specs['train'].num_frames, seed, final)
  os.makedirs(root, exist_ok=True)
  tmp = f'{final}.tmp-{os.getpid()}'
  shutil.rmtree(tmp, ignore_errors=True)       # left by an earlier process with our pid
  try:
    _build(tmp, specs, ex, violent, workers, dict(meta, class_counts={}))
    try:
      os.rename(tmp, final)
    except OSError:
      if not os.path.isdir(final):
        raise
      logging.info('another process built %s first; using it', final)
      shutil.rmtree(tmp, ignore_errors=True)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return lists
