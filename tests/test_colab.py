"""The Colab notebooks (colab/*.ipynb): committed without outputs, their install-only-what-is-
missing helper, and each executed end to end with nbclient at tiny sizes on CPU (the kernel sees
the plain process's devices, not the suite's 8 fake ones): the quick start trains, plots, renders
an MP4 and scores it; the TPU notebook resumes a copy of that run (training complete: it
re-evaluates the best checkpoint, as a rerun after a Colab disconnect does)."""

import ast
import csv
import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import sys

import pytest

import nbclient
import nbformat

importlib.import_module('ipykernel')     # the python3 kernel nbclient starts (the `test` extra)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLAB = os.path.join(ROOT, 'colab')
NOTEBOOKS = ('quickstart.ipynb', 'tpu.ipynb')
CELL_TIMEOUT = 600
# hybrid.py:tiny with the fewest compiled programs: 2 steps (one validation), no test-time views.
STEPS = 2
FAST = ['--config.eval_tta=']
HAVE_TENSORBOARD = importlib.util.find_spec('tensorboard') is not None
TEST_LINE = re.compile(r'^test frame_auc (\d\.\d{4}) \(checkpoint (\d+), chosen on validation '
                       r'frame_auc\)', re.M)


def read(name):
  return nbformat.read(os.path.join(COLAB, name), as_version=4)


def tagged(nb, tag):
  cells = [c for c in nb.cells if tag in c.metadata.get('tags', [])]
  assert len(cells) == 1, f'{len(cells)} cells tagged {tag!r}'
  return cells[0]


def kernel_env():
  """The kernel's environment: CPU, without conftest's forced 8 host devices, this checkout
  importable."""
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  flags = [f for f in env.get('XLA_FLAGS', '').split()
           if not f.startswith('--xla_force_host_platform_device_count')]
  env['XLA_FLAGS'] = ' '.join(flags)
  env['PYTHONPATH'] = os.pathsep.join([ROOT] + [p for p in [env.get('PYTHONPATH')] if p])
  env.pop('MPLBACKEND', None)        # the kernel's inline backend shows the figures
  return env


def execute(name, params, save_to):
  """Runs notebook `name` with its parameters cell replaced by `params`, cwd = the repository
  -> (the executed notebook, all its stream text). A cell error fails here."""
  nb = read(name)
  tagged(nb, 'parameters').source = '\n'.join(f'{k} = {v!r}' for k, v in params.items())
  client = nbclient.NotebookClient(nb, kernel_name='python3', timeout=CELL_TIMEOUT,
                                   resources={'metadata': {'path': ROOT}})
  try:
    client.execute(env=kernel_env())
  finally:
    nbformat.write(nb, str(save_to))     # the executed copy, for a look after a failure
  outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs]
  assert not [o for o in outputs if o.output_type == 'error']
  text = ''.join(o.get('text', '') for o in outputs if o.output_type == 'stream')
  return nb, text


def images(nb):
  return sum('image/png' in o.get('data', {}) for c in nb.cells if c.cell_type == 'code'
             for o in c.outputs)


def helpers():
  """The namespace of the notebooks' helpers cell (the same in both, checked below)."""
  ns = {}
  exec(compile(tagged(read('quickstart.ipynb'), 'helpers').source, 'helpers', 'exec'), ns)
  return ns


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_committed_notebook_is_valid_and_has_no_outputs(name):
  nb = read(name)
  nbformat.validate(nb)
  assert nb.nbformat == 4
  assert 'widgets' not in nb.metadata
  for cell in nb.cells:
    if cell.cell_type == 'code':
      assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]
    assert 'widgets' not in cell.metadata and 'outputId' not in cell.metadata
  params = {n.targets[0].id: ast.literal_eval(n.value)
            for n in ast.parse(tagged(nb, 'parameters').source).body}
  assert {'REPO_URL', 'CONFIG', 'WORKDIR', 'OVERRIDES', 'SHOW_TENSORBOARD'} <= set(params)
  assert params['CONFIG'] == {'quickstart.ipynb': 'configs/hybrid.py:local',
                              'tpu.ipynb': 'configs/hybrid.py'}[name]
  assert params['OVERRIDES'] == [] and params['SHOW_TENSORBOARD'] is True
  if name == 'tpu.ipynb':
    assert params['WORKDIR'].startswith('/content/drive/') and 'NUM_STEPS' in params


def test_notebooks_share_one_setup():
  a, b = (read(n) for n in NOTEBOOKS)
  for tag in ('helpers', 'setup'):
    assert tagged(a, tag).source == tagged(b, tag).source, tag


def test_missing_requirements_drops_jax_and_installed_keeps_missing(tmp_path):
  ns = helpers()
  absent = 'vad-jax-colab-test-absent-pkg'
  assert importlib.util.find_spec(absent.replace('-', '_')) is None
  (tmp_path / 'pyproject.toml').write_text(
      '[project]\nname = "x"\ndependencies = [\n'
      '  "jax>=0.7",\n  "JAXLIB",\n  "numpy>=1.26",\n  "ML_Collections>=1.0",\n'
      f'  "{absent}>=1; python_version >= \'3\'",\n]\n'
      '[project.optional-dependencies]\ntest = ["pytest>=8", "jax[cpu]"]\n')
  missing, installed, dropped = ns['missing_requirements'](tmp_path / 'pyproject.toml')
  assert missing == [f"{absent}>=1; python_version >= '3'"]
  assert installed == ['numpy>=1.26', 'ML_Collections>=1.0']
  assert dropped == ['jax>=0.7', 'JAXLIB']
  missing, installed, dropped = ns['missing_requirements'](tmp_path / 'pyproject.toml',
                                                           extras=['test'])
  assert installed[-1] == 'pytest>=8' and dropped[-1] == 'jax[cpu]'
  # The real pyproject: jax is never among what it would install; every requirement accounted.
  import tomllib
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    deps = tomllib.load(f)['project']['dependencies']
  missing, installed, dropped = ns['missing_requirements'](os.path.join(ROOT, 'pyproject.toml'))
  assert sorted(missing + installed + dropped) == sorted(deps)
  assert [ns['requirement_name'](r) for r in dropped] == ['jax']
  # pins that hold the installed jax where it is
  assert f"jax=={importlib.metadata.version('jax')}" in ns['jax_constraints']()
  assert f"jaxlib=={importlib.metadata.version('jaxlib')}" in ns['jax_constraints']()


def test_setup_without_vad_jax_clones_and_installs_only_what_is_missing(tmp_path, monkeypatch):
  """The setup cell's other branch (vad_jax not importable), its commands recorded instead of
  run: git clone REPO_URL, pip install of the missing requirement alone with the installed jax
  pinned, pip install --no-deps -e of the clone."""
  ns = helpers()
  absent = 'vad-jax-colab-test-absent-pkg'
  calls = []

  def fake_run(args, env=None):
    args = [str(a) for a in args]
    calls.append(args)
    if args[0] == 'git':
      os.makedirs(args[-1])
      with open(os.path.join(args[-1], 'pyproject.toml'), 'w') as f:
        f.write(f'[project]\nname = "vad_jax"\ndependencies = ["jax>=0.7", "numpy", "{absent}"]\n')
    if '-c' in args:
      with open(args[args.index('-c') + 1]) as f:
        calls.append(f.read().split())
    return ''

  real_find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, 'find_spec',
                      lambda name, *a: None if name == 'vad_jax' else real_find_spec(name, *a))
  monkeypatch.setattr(sys, 'path', list(sys.path))
  monkeypatch.chdir(tmp_path)
  clone = tmp_path.resolve() / 'clone'
  ns.update(run=fake_run, REPO_URL='https://example.invalid/vad_jax.git', REPO_DIR=str(clone),
            WORKDIR='runs/x')
  exec(compile(tagged(read('quickstart.ipynb'), 'setup').source, 'setup', 'exec'), ns)
  pip = [sys.executable, '-m', 'pip', 'install', '-q']
  assert calls[0] == ['git', 'clone', '--depth', '1', 'https://example.invalid/vad_jax.git',
                      str(clone)]
  assert calls[1][:len(pip) + 1] == pip + ['-c'] and calls[1][len(pip) + 2:] == [absent]
  assert f"jax=={importlib.metadata.version('jax')}" in calls[2]
  assert calls[3] == pip + ['--no-deps', '-e', str(clone)] and len(calls) == 4
  assert os.getcwd() == str(clone) and ns['WORKDIR'] == str(clone / 'runs' / 'x')


def test_run_helper_streams_and_raises(capsys):
  ns = helpers()
  out = ns['run']([sys.executable, '-c', 'import sys; print("out"); print("err", file=sys.stderr)'])
  assert out.splitlines() == ['out', 'err']
  assert 'out' in capsys.readouterr().out
  with pytest.raises(RuntimeError, match='exit status 3'):
    ns['run']([sys.executable, '-c', 'raise SystemExit(3)'])


@pytest.fixture(scope='module')
def quickstart(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('colab')
  workdir = tmp / 'quickstart_run'
  nb, text = execute('quickstart.ipynb', dict(
      REPO_URL='https://example.invalid/unused.git', REPO_DIR='',
      CONFIG='configs/hybrid.py:tiny', WORKDIR=str(workdir),
      OVERRIDES=[f'--config.num_steps={STEPS}', *FAST],
      SHOW_TENSORBOARD=not HAVE_TENSORBOARD, VIDEO=''), tmp / 'quickstart.executed.ipynb')
  return nb, text, workdir


def test_quickstart_trains_plots_and_scores_a_rendered_video(quickstart):
  nb, text, workdir = quickstart
  from vad_jax.data import video
  # setup: this checkout, nothing to install
  assert f'vad_jax is importable from {ROOT}: using it' in text
  assert 'missing requirements: []' in text
  if not HAVE_TENSORBOARD:
    assert 'pip install tensorboard' in text
  # training: the run's own final line, its files
  m = TEST_LINE.search(text)
  assert m and int(m.group(2)) == STEPS, text[-3000:]
  for f in ('config.json', 'metrics.json', 'scores_test.npz', 'alert_threshold.json',
            'test_scores.png', 'test_confusion.png', 'data_info.json'):
    assert (workdir / f).is_file(), f
  for d in ('checkpoints', 'best', 'tensorboard'):
    assert any((workdir / d).iterdir()), d
  metrics = json.loads((workdir / 'metrics.json').read_text())
  assert f"{metrics['frame_auc']:.4f}" == m.group(1)
  assert metrics['steps_trained'] == STEPS
  # results: the AUC recomputed from scores_test.npz by the notebook is the evaluator's
  auc = re.search(r'frame AUC recomputed from scores_test.npz: ([\d.]+) \(metrics.json: ([\d.]+)\)',
                  text)
  assert auc and float(auc.group(1)) == pytest.approx(metrics['frame_auc'], abs=2e-6)
  # score: the rendered MP4, a row of scores.csv a frame, alerts.json printed
  mp4 = workdir / 'demo_street.mp4'
  frames = sum(1 for _ in video.iter_frames(str(mp4)))
  assert frames == 96 and f'rendered {mp4}: 96 frames' in text
  out = workdir / 'scores' / 'demo_street'
  with open(out / 'scores.csv') as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == frames and [int(r['frame']) for r in rows] == list(range(frames))
  assert all(0 <= float(r['score']) <= 1 for r in rows)
  alerts = json.loads((out / 'alerts.json').read_text())
  assert alerts['threshold'] == pytest.approx(
      json.loads((workdir / 'alert_threshold.json').read_text())['threshold'])
  assert '"threshold_source"' in text and f'scores.csv: {frames} frames' in text
  assert (out / 'annotated.mp4').is_file() and (out / 'scores.png').is_file()
  # figures shown: the score/ROC figure, the run's 2 test PNGs, scores.png
  assert images(nb) >= 4


def test_tpu_notebook_on_cpu_warns_and_resumes_the_run(quickstart, tmp_path):
  _, _, done = quickstart
  workdir = tmp_path / 'drive_run'
  shutil.copytree(done, workdir, ignore=shutil.ignore_patterns('scores', 'demo_street.mp4'))
  before = json.loads((workdir / 'metrics.json').read_text())
  (workdir / 'metrics.json').unlink()
  nb, text = execute('tpu.ipynb', dict(
      REPO_URL='https://example.invalid/unused.git', REPO_DIR='',
      CONFIG='configs/hybrid.py:tiny', WORKDIR=str(workdir), NUM_STEPS=STEPS,
      OVERRIDES=FAST, SHOW_TENSORBOARD=not HAVE_TENSORBOARD), tmp_path / 'tpu.executed.ipynb')
  assert 'missing requirements: []' in text
  # the plain process's devices: one CPU device, not the suite's 8
  assert re.search(r'^jax [\d.]+\S*: 1 device\(s\): \[CpuDevice\(id=0\)\]$', text, re.M), text[:3000]
  assert "WARNING: not on a TPU (backend 'cpu')" in text
  assert f'has checkpoints [{STEPS}]: the run resumes from step {STEPS}' in text
  assert f'training already complete (step {STEPS}); evaluating the best checkpoint' in text
  m = TEST_LINE.search(text)
  assert m and int(m.group(2)) == STEPS
  after = json.loads((workdir / 'metrics.json').read_text())
  assert after['frame_auc'] == before['frame_auc'] and after['checkpoint_step'] == STEPS
  assert 'frame AUC recomputed from scores_test.npz' in text
  assert images(nb) >= 3
