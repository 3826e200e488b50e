"""Seed 002 as a system: logit adjustment and the loss mix wired as stated, the frame source split
by video (a leak is refused), weighted sampling through the pipeline, vertical-flip views, and
the trainer end to end (EMA, mixup / CutMix, severity augmentation, 4-way TTA)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import multihead as multihead_config
from vad_jax import systems
from vad_jax.data import pipeline, sources, views
from vad_jax.data.source import DataInfo
from vad_jax.data.splits import SplitLeak
from vad_jax.losses import imbalance
from vad_jax.systems.multihead import head_counts
from vad_jax.train import loop

COUNTS = np.array([40, 1, 3, 5, 2, 6, 1, 2, 4, 3, 2, 1, 2, 3])


def test_loss_is_the_stated_mix_with_logit_adjusted_training_logits():
  """Recomputes the system's loss terms from the model's raw outputs: every head's logits get
  + tau * log prior of its own label set before the losses; predictions are the raw logits."""
  c = multihead_config.get_config('tiny')
  spec = {'image': jax.ShapeDtypeStruct((32, 32, 3), jnp.uint8),
          'label': jax.ShapeDtypeStruct((), jnp.int32)}
  info = DataInfo(tuple(sources.CLASS_NAMES), COUNTS, spec)
  system = systems.get('multihead').from_config(c, info)
  rng = np.random.default_rng(0)
  batch = {'image': jnp.asarray(rng.integers(0, 255, (8, 32, 32, 3)), jnp.uint8),
           'label': jnp.asarray([0, 0, 3, 5, 0, 13, 1, 0], jnp.int32)}
  # Values drawn with numpy at the model's shapes: the wiring, not the initialiser, is tested
  # (initialising the trunk compiles for ~15 s on 2 cores).
  shapes = jax.eval_shape(system.init, jax.random.key(0), pipeline.batch_spec(spec, 8))
  draw = np.random.default_rng(1)
  variables = jax.tree_util.tree_map_with_path(
      lambda path, x: jnp.asarray(
          np.ones(x.shape) if 'var' in str(path[-1]) else
          np.zeros(x.shape) if 'mean' in str(path[-1]) else
          draw.normal(0, 0.2, x.shape), x.dtype), shapes)

  @jax.jit
  def everything(variables, batch):          # one compile for all the model calls below
    total, (m, _) = system.loss(variables, batch, jax.random.key(1))
    out, _ = system.model.apply(variables, batch['image'], train=True,
                                rngs={'dropout': jax.random.key(1)}, mutable=['batch_stats'])
    pred = system.predict(variables, {'image': batch['image']})
    ref = system.model.apply(variables, batch['image'], train=False)['logits']
    return total, m, out, pred, ref

  total, m, out, pred, ref = everything(variables, batch)
  hc = {k: jnp.asarray(v, jnp.float32) for k, v in head_counts(COUNTS).items()}
  adj = lambda x, n: x + c.loss.tau * jnp.log(n / n.sum())
  y = batch['label']
  focal = imbalance.class_balanced_focal_loss(adj(out['logits'], hc['full']), y, hc['full'],
                                              c.loss.cb_beta, c.loss.focal_gamma)
  anom = (y != 0).astype(jnp.int32)
  ce = 0.5 * (imbalance.balanced_cross_entropy(adj(out['binary_logits'], hc['binary']), anom,
                                                hc['binary']) +
              imbalance.balanced_cross_entropy(adj(out['type_logits'], hc['type']),
                                                jnp.maximum(y - 1, 0), hc['type'],
                                                anom.astype(jnp.float32)))
  np.testing.assert_allclose(m['focal'], focal, rtol=1e-5)
  np.testing.assert_allclose(m['ce'], ce, rtol=1e-5)
  np.testing.assert_allclose(
      total, 0.5 * focal + 0.3 * ce + 0.2 * m['contrastive'] + 0.1 * m['confidence'], rtol=1e-5)
  # without the adjustment the focal term is different: the test would catch it switched off
  plain = imbalance.class_balanced_focal_loss(out['logits'], y, hc['full'], c.loss.cb_beta,
                                              c.loss.focal_gamma)
  assert abs(float(plain) - float(focal)) > 1e-3
  np.testing.assert_allclose(pred['logits'], ref, rtol=1e-6)
  assert head_counts(COUNTS)['binary'].tolist() == [40, COUNTS[1:].sum()]


def test_frames_are_split_by_video_and_a_leak_is_refused(monkeypatch):
  c = multihead_config.get_config('tiny')
  srcs = sources.make_splits(c)
  ids = {s: set(src.video_ids()) for s, src in srcs.items()}
  assert not ids['train'] & ids['validation'] and not ids['train'] & ids['test']
  shared = srcs['test'].video_ids()[0]
  real = sources.AugmentedFrames.video_ids

  def leaky(self):
    names = real(self)
    return [shared] + names[1:] if self.split == 'validation' else names
  monkeypatch.setattr(sources.AugmentedFrames, 'video_ids', leaky)
  with pytest.raises(SplitLeak, match='in both the validation and the test split'):
    sources.make_splits(c)


def test_minority_frames_get_heavier_augmentation_in_training_only():
  c = multihead_config.get_config('tiny')
  c.data.class_imbalance = 8.0
  srcs = sources.make_splits(c)
  train = srcs['train']
  counts = np.bincount(train.labels(), minlength=14)
  normal = int(np.flatnonzero(train.labels() == 0)[0])       # the majority class: severity 0
  rare = int(np.flatnonzero(train.labels() == np.argmin(np.where(counts > 0, counts, 1e9)))[0])
  rng = lambda: np.random.default_rng(5)
  e = train[normal]
  np.testing.assert_array_equal(train.train_transform(e, rng())['image'], e['image'])
  changed = [np.any(train.train_transform(train[rare], np.random.default_rng(s))['image']
                    != train[rare]['image']) for s in range(8)]
  assert sum(changed) >= 6
  v = srcs['validation']
  e0 = v[0]
  assert v.augment is None and v.train_transform(e0, rng()) is e0


def test_weighted_sampling_balances_the_training_stream():
  c = multihead_config.get_config('tiny')
  c.data.sampling_power = 1.0
  c.data.augment = ''
  src = sources.make(c, 'train')
  it = pipeline.train_iterator(c, src, ('image', 'label'), 16, 0)
  labels = np.concatenate([next(it)['label'] for _ in range(40)])
  present = np.flatnonzero(np.bincount(src.labels(), minlength=14))
  freq = np.bincount(labels, minlength=14)[present] / len(labels)
  np.testing.assert_allclose(freq, 1 / len(present), atol=0.06)     # vs ~0.7 Normal unweighted


def test_vflip_view_on_images():
  x = np.arange(2 * 3 * 4 * 1).reshape(2, 3, 4, 1)
  np.testing.assert_array_equal(views.apply(x, ('vflip',)), x[:, ::-1])
  np.testing.assert_array_equal(views.apply(jnp.asarray(x), ('hflip', 'vflip')),
                                x[:, ::-1, ::-1])


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
  """(config, workdir, results) of one trained multihead:tiny run, shared by the tests below."""
  c = multihead_config.get_config('tiny')
  workdir = str(tmp_path_factory.mktemp('multihead') / 'run')
  return c, workdir, loop.train_and_evaluate(c, workdir)


def test_end_to_end_tiny(tiny_run):
  c, workdir, results = tiny_run
  assert c.ema_decay > 0 and c.mixup.cutmix_alpha > 0 and c.eval_tta.count(',') == 2
  with open(os.path.join(workdir, 'metrics.json')) as f:
    saved = json.load(f)
  for key in ('accuracy', 'balanced_accuracy', 'macro_f1', 'anomaly_auc'):
    assert 0.0 <= saved[key] <= 1.0
  assert set(saved['per_class_accuracy']) == set(sources.CLASS_NAMES)
  preds = np.load(os.path.join(workdir, 'predictions_test.npz'))
  assert preds['probs'].shape == (len(results and preds['index']), 14)
  np.testing.assert_allclose(preds['probs'].sum(-1), 1.0, rtol=1e-5)
  assert os.path.exists(os.path.join(workdir, 'test_confusion.png'))


def test_score_command_per_frame(tiny_run, tmp_path):
  """`python -m vad_jax.score` on the frame classifier: its alert threshold is the stated
  quantile of the best checkpoint's validation Normal frames' 1 - p(Normal); on a test video's
  raw frames it reproduces the evaluator's saved per-frame probabilities (4 test-time views);
  on an MP4 of that video (H.264 is lossy: compared with the scorer on the decoded frames) the
  CSV holds 1 - p(Normal) and the top class; --stream (the same views) gives the same scores."""
  import csv
  from vad_jax import score
  from vad_jax.data import video
  c, workdir, _ = tiny_run
  val = np.load(os.path.join(workdir, 'predictions_validation.npz'))
  with open(os.path.join(workdir, 'alert_threshold.json')) as f:
    thr = json.load(f)
  normal = 1.0 - val['probs'][val['label'] == 0, 0].astype(np.float64)
  assert thr['threshold'] == pytest.approx(np.quantile(normal, 0.95), abs=1e-7)
  assert thr['false_alarm_rate'] == 0.05 and thr['normal_frames'] == len(normal)

  scorer = score.Scorer(workdir, window=12)         # 16 frames: a full and a padded batch
  assert scorer.per_frame and scorer.threshold_info == thr
  test = np.load(os.path.join(workdir, 'predictions_test.npz'))
  src = sources.make(c, 'test')
  k = c.data.frames_per_video
  frames = src.videos[0]['frames']                       # every frame of test video 0
  got, probs = scorer(frames)
  rows = np.argsort(test['index'])[:k]                   # its k evaluated frames
  np.testing.assert_allclose(probs[src.frame_index], test['probs'][rows], atol=1e-5)
  np.testing.assert_allclose(got[src.frame_index], 1.0 - test['probs'][rows, 0], atol=1e-5)

  path = str(tmp_path / 'clip.mp4')
  video.write_video(path, frames, 8)
  decoded = video.decode(path, scorer.fps, (scorer.height, scorer.width))[0]
  want, want_probs = scorer(decoded)
  np.testing.assert_allclose(want, 1.0 - want_probs[:, 0], atol=1e-6)

  def read(folder):
    with open(os.path.join(folder, 'scores.csv')) as f:
      return list(csv.DictReader(f))
  res = score.score_video(scorer, path, str(tmp_path / 'scored'), hysteresis=0.0,
                          min_alert_seconds=0.0)
  assert res['frames'] == len(frames) and res['threshold'] == thr['threshold']
  table = read(tmp_path / 'scored')
  np.testing.assert_allclose([float(r['score']) for r in table], want, atol=1e-5)
  assert [r['top_class'] for r in table] == [scorer.class_names[i] for i in
                                             want_probs.argmax(1)]
  for name in ('scores.png', 'alerts.json', 'annotated.mp4'):
    assert os.path.exists(tmp_path / 'scored' / name), name

  res = score.stream_video(scorer, path, str(tmp_path / 'streamed'))
  assert res['frames'] == len(frames) and res['latency_ms_median'] > 0
  streamed = read(tmp_path / 'streamed')
  np.testing.assert_allclose([float(r['score']) for r in streamed], want, atol=1.5e-5)
