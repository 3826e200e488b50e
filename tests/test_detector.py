"""Seed 004 as a system: person frames carry the renderer's boxes and are split by video, the
plateau monitor and early stopping act through the loop, the trainer runs end to end, and
`python -m vad_jax.detect` reproduces the evaluator's detections on the run's own test images
(image folder and video), with clear errors for bad input."""

import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from configs import detector as detector_config
from vad_jax import detect
from vad_jax.data import sources, synthetic, video
from vad_jax.data.person_frames import PersonFrames
from vad_jax.data.splits import SplitLeak
from vad_jax.train import loop, trained


def test_person_frames_hold_the_renderers_boxes_packed():
  c = detector_config.get_config('tiny')
  src = sources.make(c, 'validation')
  assert isinstance(src, PersonFrames) and src.augment is None
  videos = synthetic.SyntheticVideos(src.spec, 'validation')
  for i in range(len(src)):
    e = src[i]
    v = videos[int(e['video'])]
    t = int(e['frame'])
    want = v['boxes'][t][v['box_valid'][t]]
    n = int(e['label'])
    assert n == len(want) == int(e['box_valid'].sum()) and e['box_valid'][:n].all()
    np.testing.assert_array_equal(e['boxes'][:n], want)
    assert not e['boxes'][n:].any()
    np.testing.assert_array_equal(e['image'], v['frames'][t])
  np.testing.assert_array_equal(src.labels(), [src[i]['label'] for i in range(len(src))])
  assert sources.make(c, 'train').augment is not None         # boxes move in training only


def test_person_frames_are_split_by_video_and_a_leak_is_refused(monkeypatch):
  c = detector_config.get_config('tiny')
  srcs = sources.make_splits(c)
  ids = {s: set(src.video_ids()) for s, src in srcs.items()}
  assert not ids['train'] & ids['test'] and not ids['validation'] & ids['test']
  shared = srcs['train'].video_ids()[0]
  real = PersonFrames.video_ids
  monkeypatch.setattr(PersonFrames, 'video_ids', lambda self: (
      [shared] + real(self)[1:] if self.split == 'test' else real(self)))
  with pytest.raises(SplitLeak):
    sources.make_splits(c)


def test_config_checks():
  c = detector_config.get_config('tiny')
  for key, value, match in (('eval_tta', 'hflip', 'eval_tta'), ('detect.nms_iou', 0.0, 'nms_iou'),
                            ('data.augment', 'hflip', 'box_augment')):
    bad = detector_config.get_config('tiny')
    section, _, name = key.rpartition('.')
    (bad[section] if section else bad)[name] = value
    with pytest.raises(ValueError, match=match):
      loop.check_config(bad)
  loop.check_config(c)
  for arg in ('', 'local', 'yolo'):
    loop.check_config(detector_config.get_config(arg))


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  c = detector_config.get_config('tiny')
  c.num_steps = 12
  c.eval_every = c.checkpoint_every = 2
  # never improving after the first evaluation -> lr x0.5 after 1 + 1 bad, stop after 3 bad
  c.monitors.plateau = dict(metric='map50', mode='max', factor=0.5, patience=1,
                            stop_patience=3, threshold=10.0)
  workdir = str(tmp_path_factory.mktemp('detector') / 'run')
  results = loop.train_and_evaluate(c, workdir)
  return workdir, results, c


def test_end_to_end_tiny_with_plateau_and_early_stopping(run):
  workdir, results, c = run
  with open(os.path.join(workdir, 'metrics.json')) as f:
    saved = json.load(f)
  for key in ('map50', 'map', 'map75', 'precision', 'recall', 'f1'):
    assert 0.0 <= saved[key] <= 1.0
  events = [(e['step'], e['action']) for e in saved['monitor_events']]
  assert events == [(6, 'scale_lr'), (8, 'stop')]        # threshold 10: nothing improves
  assert saved['steps_trained'] == 8 and saved['stopped_early']
  for name in ('detections_test.npz', 'coco_gt_test.json', 'coco_dets_test.json',
               'test_detections.png', 'data_info.json'):
    assert os.path.exists(os.path.join(workdir, name)), name


def test_trained_run_loads_and_detect_reproduces_the_evaluators_detections(run, tmp_path):
  workdir, results, c = run
  r = trained.load(workdir)
  assert r.system.task == 'detection' and r.step == results['checkpoint_step']
  test = sources.make(c, 'test')
  folder = tmp_path / 'images'
  folder.mkdir()
  for i in range(len(test)):
    Image.fromarray(test[i]['image']).save(folder / f'{i:03d}.png')
  out = tmp_path / 'out'
  res = detect.detect(workdir, str(folder), str(out), threshold=0.0, batch=4)
  assert res['frames'] == len(test)
  with open(out / 'detections.jsonl') as f:
    rows = [json.loads(line) for line in f]
  with open(out / 'detections.csv') as f:
    assert len(list(csv.DictReader(f))) == len(rows) == res['detections']
  saved = np.load(os.path.join(workdir, 'detections_test.npz'))
  h, w = test[0]['image'].shape[:2]
  for i in range(len(test)):
    mine = [r_ for r_ in rows if r_['source'] == f'{i:03d}.png']
    k = np.flatnonzero(saved['index'] == i)[0]
    want = saved['det_scores'][k][saved['det_valid'][k]]
    np.testing.assert_allclose([m['score'] for m in mine], want, atol=1e-5)
    boxes = saved['det_boxes'][k][saved['det_valid'][k]] * [w, h, w, h]
    np.testing.assert_allclose([[m[x] for x in ('x0', 'y0', 'x1', 'y1')] for m in mine],
                               boxes, atol=0.01)
    assert (out / 'annotated' / f'{i:03d}.png').exists()
  # a video: one annotated MP4, one row group a frame
  clip = tmp_path / 'clip.mp4'
  video.write_video(str(clip), np.stack([test[i]['image'] for i in range(len(test))]), 8)
  res = detect.detect(workdir, str(clip), str(tmp_path / 'vid'), threshold=0.0, batch=4)
  assert res['kind'] == 'video' and res['frames'] == len(test)
  assert (tmp_path / 'vid' / 'annotated.mp4').exists()
  assert not [f for f in os.listdir(tmp_path / 'vid') if f.startswith('.tmp')]


def test_detect_errors(run, tmp_path, capsys):
  workdir, _, _ = run
  assert detect.main(['--workdir', workdir, str(tmp_path / 'missing')]) == 2
  assert 'no such file' in capsys.readouterr().err
  (tmp_path / 'empty').mkdir()
  assert detect.main(['--workdir', workdir, str(tmp_path / 'empty')]) == 2
  assert 'no .jpg' in capsys.readouterr().err
  assert detect.main(['--workdir', str(tmp_path), str(tmp_path / 'empty')]) == 2
  assert 'not a vad_jax training workdir' in capsys.readouterr().err


def test_prepare_sets_the_head_priors_from_the_training_boxes():
  """sigmoid(head bias) = (0.5, 0.5, mean w, mean h, fraction of cells owning a box), from the
  training examples; the loss is untouched."""
  import jax
  from vad_jax import systems
  from vad_jax.boxes import grid as grid_lib
  from vad_jax.data import pipeline
  c = detector_config.get_config('tiny')
  system, srcs, info, _ = loop.build(c)
  shapes = jax.eval_shape(system.init, jax.random.key(0), pipeline.batch_spec(info.element_spec, 2))
  variables = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), shapes)    # nothing compiled
  batches = list(pipeline.eval_batches(c, srcs['train'], system.train_fields, 8))
  after = system.prepare(variables, iter(batches))
  train = srcs['train']
  boxes, valid = train.boxes()
  wh = (boxes[..., 2:] - boxes[..., :2])[valid].mean(0)
  owned = np.asarray(grid_lib.cell_targets(boxes, valid, system.grid)['obj']).mean()
  got = 1 / (1 + np.exp(-np.asarray(after['params']['head']['bias'], np.float64)))
  np.testing.assert_allclose(got, [0.5, 0.5, wh[0], wh[1], owned], rtol=1e-5)
  np.testing.assert_array_equal(after['params']['head']['kernel'],
                                variables['params']['head']['kernel'])
  assert isinstance(system, systems.get('detector'))


def test_export_equals_in_process_predict_and_runs_with_jax_and_numpy_only(run, tmp_path):
  """`python -m vad_jax.export` -> the standalone script (jax + numpy imports only) gives the
  run's own predict outputs, at two batch sizes (the batch dimension is symbolic)."""
  import ast
  import subprocess
  import sys
  import jax
  from vad_jax.export import serialize, standalone
  workdir, _, c = run
  out = str(tmp_path / 'model.jaxexport')
  meta = serialize.export_run(workdir, out)
  assert meta['input'] == {'name': 'image', 'shape': ['b', 64, 64, 3], 'dtype': 'uint8'}
  r = trained.load(workdir)
  test = sources.make(c, 'test')
  x = np.stack([test[i]['image'] for i in range(3)])
  want = jax.jit(lambda v, im: r.system.predict(v, {'image': im}))(r.variables, x)
  call, _ = standalone.load(out)
  for n in (1, 3):
    got = call(x[:n])
    for k in ('boxes', 'scores', 'valid'):
      np.testing.assert_allclose(np.asarray(got[k]), np.asarray(want[k])[:n], atol=1e-5)
  np.save(tmp_path / 'x.npy', x)
  script = standalone.__file__
  mods = {a.name.split('.')[0] for n in ast.walk(ast.parse(open(script).read()))
          if isinstance(n, ast.Import) for a in n.names}
  mods |= {n.module.split('.')[0] for n in ast.walk(ast.parse(open(script).read()))
           if isinstance(n, ast.ImportFrom)}
  assert mods <= {'argparse', 'json', 'sys', 'jax', 'numpy'}, mods
  done = subprocess.run([sys.executable, script, out, str(tmp_path / 'x.npy')], cwd=tmp_path,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  saved = np.load(tmp_path / 'x.outputs.npz')
  np.testing.assert_allclose(saved['scores'], np.asarray(want['scores']), atol=1e-5)
