"""Preemption with a real process and a real signal: SIGTERM mid-training saves a checkpoint at
the step reached and exits cleanly (status 0); the rerun resumes and ends bit-identical to an
uninterrupted run."""

import json
import os
import signal
import subprocess
import sys

import numpy as np

from vad_jax.train import trained

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 300


def command(workdir, cache):
  return [sys.executable, '-m', 'vad_jax.main', '--config=configs/detector.py:tiny',
          f'--workdir={workdir}', f'--config.num_steps={STEPS}', f'--config.eval_every={STEPS}',
          f'--config.checkpoint_every={STEPS}', '--config.log_every=1',
          f'--compilation_cache={cache}']


def test_sigterm_checkpoints_exits_cleanly_and_the_rerun_resumes_bit_identically(tmp_path):
  cache = str(tmp_path / 'xla')
  ref = tmp_path / 'reference'
  done = subprocess.run(command(ref, cache), cwd=ROOT, capture_output=True, text=True,
                        timeout=600)
  assert done.returncode == 0, done.stderr[-2000:]

  run = tmp_path / 'preempted'
  proc = subprocess.Popen(command(run, cache), cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  log = []
  for line in proc.stderr:                 # absl logs to stderr: signal after step 5
    log.append(line)
    if f'step 5/{STEPS}' in line:
      proc.send_signal(signal.SIGTERM)
      break
  out, err = proc.communicate(timeout=600)
  log.append(err)
  assert proc.returncode == 0, ''.join(log)[-3000:]
  assert 'preempted: checkpoint saved at step' in out
  saved = sorted(int(s) for s in os.listdir(run / 'checkpoints') if s.isdigit())
  assert len(saved) == 1 and 5 <= saved[0] < STEPS, saved
  assert not (run / 'metrics.json').exists()

  resumed = subprocess.run(command(run, cache), cwd=ROOT, capture_output=True, text=True,
                           timeout=600)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert 'resumed from' in resumed.stderr and f'at step {saved[0]}' in resumed.stderr
  a = trained.restore_eval_variables(str(ref / 'checkpoints' / str(STEPS) / 'state'))
  b = trained.restore_eval_variables(str(run / 'checkpoints' / str(STEPS) / 'state'))
  for x, y in zip(*(jax_leaves(v) for v in (a, b))):
    np.testing.assert_array_equal(x, y)
  with open(ref / 'metrics.json') as f, open(run / 'metrics.json') as g:
    m_ref, m_run = json.load(f), json.load(g)
  assert m_ref['map50'] == m_run['map50'] and m_ref['map'] == m_run['map']


def jax_leaves(tree):
  import jax
  return jax.tree.leaves(tree)
