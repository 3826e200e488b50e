"""The command line and the README: errors a user sees, and documented numbers that must match."""

import os
import re
import subprocess
import sys

import pytest

from configs import hybrid as hybrid_config
from vad_jax import param_table
from vad_jax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(*args):
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='')
  return subprocess.run([sys.executable, '-m', 'vad_jax.main', *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=120)


def test_unknown_config_key_is_a_one_line_error(tmp_path):
  r = run_main('--config=configs/hybrid.py:local', '--config.num_stepz=3',
               f'--workdir={tmp_path}/w')
  assert r.returncode != 0
  assert 'num_stepz' in r.stderr and 'Did you mean "num_steps"' in r.stderr
  assert 'Traceback' not in r.stderr
  assert not os.path.exists(tmp_path / 'w')


def test_bad_config_value_is_a_one_line_error(tmp_path):
  r = run_main('--config=configs/hybrid.py:local', '--config.data.eval_stride=9',
               f'--workdir={tmp_path}/w')
  assert r.returncode == 2
  assert 'data.eval_stride=9 must be in [1, data.clip_len=8]' in r.stderr
  assert 'Traceback' not in r.stderr
  assert not os.path.exists(tmp_path / 'w')


def test_config_checks():
  c = hybrid_config.get_config('local')
  loop.check_config(c)
  c.model.trunk.weights = 'b0.h5'
  with pytest.raises(ValueError, match='need model.input=rgb'):
    loop.check_config(c)
  c.model.trunk.weights, c.model.input = '', 'flow'
  with pytest.raises(ValueError, match="model.input='flow'"):
    loop.check_config(c)
  c.model.input, c.data.min_event_px = 'motion', -1.0
  with pytest.raises(ValueError, match='min_event_px=-1.0 must be >= 0'):
    loop.check_config(c)
  c.data.min_event_px, c.eval_tta = 1.5, 'hflip,rot90'
  with pytest.raises(ValueError, match=r"eval_tta: unknown view\(s\) \['rot90'\]"):
    loop.check_config(c)


def test_full_config_on_cpu_points_at_local(tmp_path):
  r = run_main('--config=configs/hybrid.py', f'--workdir={tmp_path}/w')
  assert r.returncode == 2
  assert 'configs/hybrid.py:local' in r.stderr
  assert not os.path.exists(tmp_path / 'w')   # stopped before creating or compiling anything


def test_readme_param_table_matches_code():
  with open(os.path.join(ROOT, 'README.md')) as f:
    readme = f.read()
  block = re.search(r'<!-- param-table:start -->\n(.*?)\n<!-- param-table:end -->', readme, re.S)
  assert block, 'README lost its parameter table markers'
  assert block.group(1).strip() == param_table.markdown(hybrid_config.get_config()).strip()


def test_readme_commands_and_ci_agree():
  with open(os.path.join(ROOT, 'README.md')) as f:
    readme = f.read()
  with open(os.path.join(ROOT, '.ci', 'run')) as f:
    ci = f.read()
  commands = re.findall(r'```bash\n(.*?)\n```', readme, re.S)
  assert len(commands) >= 2
  assert commands[0].endswith('--config=configs/hybrid.py:local --workdir=runs/hybrid_local')
  assert commands[1] in ci.splitlines()
