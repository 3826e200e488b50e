"""The shared trainer on the tiny hybrid config: sharding parity, exact resume, end to end."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from configs import hybrid as hybrid_config
from vad_jax import mesh as mesh_lib
from vad_jax.data import pipeline
from vad_jax.evaluate.scoring import SplitScores
from vad_jax.train import checkpoint, loop, optim, step as step_lib


def tiny():
  c = hybrid_config.get_config('tiny')
  c.model.trunk.drop_connect_rate = 0.2   # exercise stochastic depth in the step
  return c


_COMPILED = {}


def setup(config, devices):
  """Fresh state and data iterator; the jitted step is built once per mesh (compiling is slow)."""
  key = tuple(d.id for d in devices)
  if key not in _COMPILED:
    mesh = mesh_lib.make_mesh(config.mesh, devices)
    system, srcs, info, _ = loop.build(config)
    step = step_lib.make_train_step(system, mesh, config.seed,
                                    optim.schedule(config.optim, config.num_steps),
                                    config.ema_decay)
    _COMPILED[key] = mesh, step, loop.init_state(config, system, info, mesh), system, srcs
  mesh, step, state, system, srcs = _COMPILED[key]
  it = pipeline.train_iterator(config, srcs['train'], system.train_fields,
                               loop.examples_per_step(config, type(system), mesh), config.seed)
  return mesh, jax.tree.map(jnp.copy, state), it, step  # copy: the step donates its input


@pytest.fixture(scope='module')
def config():
  return tiny()


def test_one_step_same_on_1_and_8_devices(config):
  assert jax.device_count() == 8
  results = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh, state, it, step = setup(config, devices)
    init = jax.device_get({'params': state.params, 'model_state': state.model_state})
    batch = next(it)
    state, metrics = step(state, mesh_lib.to_global(batch, mesh))
    new = jax.device_get({'params': state.params, 'model_state': state.model_state})
    results.append((new['params'], new['model_state']['batch_stats'], jax.device_get(metrics),
                    batch))
    # The average of parameters AND BatchNorm statistics: ema = d * init + (1 - d) * new after
    # one step (init = ema at step 0), so evaluation never pairs averaged weights with raw stats.
    d = config.ema_decay
    assert d > 0
    ema = jax.device_get(state.ema)
    assert jax.tree.structure(ema) == jax.tree.structure(new)
    assert not np.allclose(init['model_state']['batch_stats']['trunk']['stem']['bn']['mean'],
                           new['model_state']['batch_stats']['trunk']['stem']['bn']['mean'])
    for e, p0, p in zip(*(jax.tree.leaves(t) for t in (ema, init, new))):
      np.testing.assert_allclose(e, d * p0 + (1 - d) * p, rtol=1e-6, atol=1e-7)
    evalv = state.eval_variables()
    assert evalv['batch_stats'] is state.ema['model_state']['batch_stats']
  (p1, s1, m1, b1), (p8, s8, m8, b8) = results
  np.testing.assert_array_equal(b1['video'], b8['video'])
  assert np.isfinite(m1['loss'])
  np.testing.assert_allclose(m1['loss'], m8['loss'], rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s8)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_save_restore_next_step_identical(config, tmp_path):
  devices = jax.devices()
  # Uninterrupted: 3 steps.
  mesh, state, it, step = setup(config, devices)
  for _ in range(3):
    state, _ = step(state, mesh_lib.to_global(next(it), mesh))
  straight = jax.device_get((state.params, state.ema, state.model_state, state.opt_state))

  # Interrupted: 2 steps, save, fresh process state, restore, 1 step.
  mesh, state, it, step = setup(config, devices)
  for _ in range(2):
    state, _ = step(state, mesh_lib.to_global(next(it), mesh))
  ck = checkpoint.Checkpoints(str(tmp_path), keep=2, best_metric='frame_auc')
  ck.save(2, state, it, {'events': [{'step': 2}], 'stopped': None})
  ck.wait()
  mesh, fresh, it2, step = setup(config, devices)
  fresh, monitors = ck.restore(fresh, it2)
  assert monitors == {'events': [{'step': 2}], 'stopped': None}
  assert int(fresh.step) == 2
  fresh, _ = step(fresh, mesh_lib.to_global(next(it2), mesh))
  resumed = jax.device_get((fresh.params, fresh.ema, fresh.model_state, fresh.opt_state))
  assert len(jax.tree.leaves(resumed)) == len(jax.tree.leaves(straight))
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(a, b)
  ck.close()


def test_checkpoint_written_on_8_devices_restores_on_1(config, tmp_path):
  """Orbax restores into the template's shardings: a state saved from an 8-device mesh comes
  back on a 1-device mesh with the same values and data position, and steps on from there."""
  mesh8, state8, it8, step8 = setup(config, jax.devices())
  state8, _ = step8(state8, mesh_lib.to_global(next(it8), mesh8))
  ck = checkpoint.Checkpoints(str(tmp_path), keep=1, best_metric='frame_auc')
  ck.save(1, state8, it8, {})
  ck.wait()
  mesh1, fresh, it1, step1 = setup(config, jax.devices()[:1])
  fresh, _ = ck.restore(fresh, it1)
  assert {d for x in jax.tree.leaves(fresh.params) for d in x.devices()} == {jax.devices()[0]}
  for a, b in zip(jax.tree.leaves(jax.device_get(state8)), jax.tree.leaves(jax.device_get(fresh))):
    np.testing.assert_array_equal(a, b)
  batch8, batch1 = next(it8), next(it1)
  np.testing.assert_array_equal(batch8['video'], batch1['video'])
  state8, m8 = step8(state8, mesh_lib.to_global(batch8, mesh8))
  fresh, m1 = step1(fresh, mesh_lib.to_global(batch1, mesh1))
  np.testing.assert_allclose(m1['loss'], m8['loss'], rtol=1e-5, atol=1e-6)
  ck.close()


def test_end_to_end_outputs_and_resume(config, tmp_path, monkeypatch):
  # Scripted validation values: step 2 is the best, step 4 worse. The tested checkpoint must be
  # the validation argmax (step 2), restored, not the last state.
  scripted, seen = iter([0.9, 0.5]), []
  real_evaluate = loop.evaluate

  def evaluate(config, evals, predict, state, mesh, source, fields):
    results, artifacts = real_evaluate(config, evals, predict, state, mesh, source, fields)
    seen.append((source.split, int(state.step)))
    if source.split == 'validation':
      results['frame_auc'] = next(scripted)
    return results, artifacts

  monkeypatch.setattr(loop, 'evaluate', evaluate)
  workdir = str(tmp_path / 'run')
  results = loop.train_and_evaluate(config, workdir)
  assert seen == [('validation', 2), ('validation', 4), ('test', 2)]
  assert results['checkpoint_step'] == 2 and results['validation_frame_auc'] == 0.9
  monkeypatch.setattr(loop, 'evaluate', real_evaluate)
  for name in ('metrics.json', 'scores_test.npz', 'test_scores.png', 'test_confusion.png',
               'config.json'):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert os.listdir(os.path.join(workdir, 'tensorboard'))
  with open(os.path.join(workdir, 'metrics.json')) as f:
    saved = json.load(f)
  scores = SplitScores.load(os.path.join(workdir, 'scores_test.npz'))
  assert len(scores.video_index) == config.data.num_test
  assert len(scores.frame_scores) == config.data.num_test * config.data.eval_frames
  if 0 < scores.frame_labels.mean() < 1:
    fpr, tpr, _ = skm.roc_curve(scores.frame_labels, scores.frame_scores)
    assert abs(skm.auc(fpr, tpr) - saved['frame_auc']) < 1e-6
    assert abs(skm.average_precision_score(scores.frame_labels, scores.frame_scores)
               - saved['frame_ap']) < 1e-6
  cm = np.array(saved['clip_confusion_matrix'])
  assert cm.shape == (14, 14) and cm.sum() == scores.clip_scores.size

  # A second run in the same workdir resumes (no training left) and reproduces the metrics.
  steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints')) if s.isdigit())
  assert steps[-1] == config.num_steps
  again = loop.train_and_evaluate(config, workdir)
  assert again['frame_auc'] == results['frame_auc'] and again['checkpoint_step'] == 2
  check_score_command(workdir, config)


def check_score_command(workdir, config):
  """`python -m vad_jax.score` on the run above: its alert threshold is the stated quantile of
  the best checkpoint's validation normal frames; on a test video's raw frames (one window: the
  whole video) it reproduces the evaluator's frame scores; on an MP4 it writes its four files."""
  from vad_jax import score
  from vad_jax.data import sources, video
  with open(os.path.join(workdir, 'alert_threshold.json')) as f:
    thr = json.load(f)
  val = SplitScores.load(os.path.join(workdir, 'scores_validation.npz'))
  normal = val.frame_scores[val.frame_labels == 0]
  assert thr['threshold'] == pytest.approx(np.quantile(normal, 0.95))
  test = SplitScores.load(os.path.join(workdir, 'scores_test.npz'))
  src = sources.make(config, 'test')
  frames = src[0]['video']
  scorer = score.Scorer(workdir, window=len(frames))
  got, probs = scorer(frames)
  np.testing.assert_allclose(got, test.video(0)[0], atol=1e-5)
  assert probs.shape == (len(frames), 14)
  path = os.path.join(workdir, 'clip.mp4')
  video.write_video(path, np.concatenate([frames, frames]), 8)
  out = os.path.join(workdir, 'scored')
  res = score.score_video(scorer, path, out, threshold=float(np.median(got)), hysteresis=0.0,
                          min_alert_seconds=0.0)
  assert res['frames'] == 2 * len(frames)
  for name in ('scores.csv', 'scores.png', 'alerts.json', 'annotated.mp4'):
    assert os.path.exists(os.path.join(out, name)), name
  with open(os.path.join(out, 'alerts.json')) as f:
    alerts = json.load(f)['alerts']
  assert alerts and all(a['peak_score'] >= float(np.median(got)) for a in alerts)
  assert not [f for f in os.listdir(out) if f.startswith('.tmp')]
  # Streaming is causal: changing the frames after t changes no score up to t.
  from vad_jax.stream import StreamScorer
  other = frames.copy()
  cut = len(frames) // 2
  other[cut:] = 255 - other[cut:]
  streamer = StreamScorer(scorer)
  sa = [streamer.push(f) for f in frames]
  streamer.reset()
  sb = [streamer.push(f) for f in other]
  assert sa[:config.data.clip_len - 1] == [None] * (config.data.clip_len - 1)
  assert [x and x[0] for x in sa[:cut]] == [x and x[0] for x in sb[:cut]]
  assert sa[-1][0] != sb[-1][0]
  res = score.stream_video(scorer, path, os.path.join(workdir, 'streamed'), threshold=0.5)
  assert res['frames'] == 2 * len(frames) and res['latency_ms_median'] > 0
  for name in ('scores.csv', 'scores.png', 'alerts.json', 'annotated.mp4'):
    assert os.path.exists(os.path.join(workdir, 'streamed', name)), name


def test_running_background_is_the_approximate_median_filter():
  from vad_jax.stream import RunningBackground
  rng = np.random.default_rng(0)
  xs = rng.integers(0, 255, (20, 4, 4, 3)).astype(np.uint8)
  bg = RunningBackground(step=3.0)
  want = xs[0].astype(np.float32)
  np.testing.assert_array_equal(bg.update(xs[0]), want)        # starts at the first frame
  for x in xs[1:]:
    want = want + 3.0 * np.sign(x.astype(np.float32) - want)
    np.testing.assert_array_equal(bg.update(x), want)


def test_alert_segments_hysteresis_and_minimum_length():
  from vad_jax.score import alert_segments
  s = np.array([0.1, 0.6, 0.55, 0.45, 0.7, 0.2, 0.9, 0.1])
  assert alert_segments(s, 0.5, hysteresis=0.1) == [(1, 5), (6, 7)]   # 0.45 >= 0.4 stays on
  assert alert_segments(s, 0.5, hysteresis=0.0) == [(1, 3), (4, 5), (6, 7)]
  assert alert_segments(s, 0.5, hysteresis=0.1, min_frames=2) == [(1, 5)]
  assert alert_segments(np.array([0.9, 0.9]), 0.5) == [(0, 2)]


def test_score_refuses_runs_it_cannot_score():
  """`score` takes video anomaly detectors and frame classifiers with a normal class; others get
  one line saying why and what to run instead."""
  import types
  from configs import detector, multihead, violence
  from vad_jax import systems
  from vad_jax.score import _refusal

  def why(config):
    cls = systems.get(config.system)
    return _refusal(types.SimpleNamespace(config=config, system=cls), 'RUN',
                    cls.predict_fields[0])
  assert why(tiny()) is None and why(multihead.get_config('tiny')) is None
  no_normal = multihead.get_config('tiny')
  no_normal.evals.classification.normal_class = None
  reasons = {'detector': why(detector.get_config('tiny')),
             'violence': why(violence.get_config('tiny')),
             'features': why(hybrid_config.get_config('features_local')),
             'no_normal': why(no_normal)}
  assert 'python -m vad_jax.detect --workdir=RUN VIDEO' in reasons['detector']
  assert 'one label per whole video' in reasons['violence']
  assert 'not video frames' in reasons['features']
  assert 'normal_class' in reasons['no_normal']
  assert all(r and '\n' not in r for r in reasons.values())


def test_full_config_refuses_cpu():
  with pytest.raises(loop.AcceleratorRequired, match='hybrid.py:local'):
    loop.check_accelerator(hybrid_config.get_config())
