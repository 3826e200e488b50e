"""Preemption and several hosts, with real processes and real signals (configs/detector.py:tiny).

* One process (2 CPU devices): SIGTERM mid-training saves a checkpoint at the step reached and
  exits cleanly (status 0); the rerun resumes and ends bit-identical to an uninterrupted run.
* Two processes (`--distributed`, gloo, 1 CPU device each): SIGTERM to process 1 alone makes
  both save at the same step and exit 0 (JAX's preemption service); the rerun resumes, and the
  finished run equals the 1-process one to float tolerance (one global shuffled stream, each
  process its rows of every batch): every logged training loss, before and after the resume.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np

from vad_jax.train import trained

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 120       # the 2-process notice has arrived within 21 steps of the signal


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


class Job:
  """`python -m vad_jax.main` on the tiny detector, its stderr in a file (never a full pipe)."""

  def __init__(self, tmp_path, name, workdir, env):
    self.log = tmp_path / f'{name}.log'
    cmd = [sys.executable, '-m', 'vad_jax.main', '--config=configs/detector.py:tiny',
           f'--workdir={workdir}', f'--config.num_steps={STEPS}', f'--config.eval_every={STEPS}',
           f'--config.checkpoint_every={STEPS}', '--config.log_every=1',
           f'--compilation_cache={tmp_path / "xla"}']
    if 'JAX_NUM_PROCESSES' in env:
      cmd.append('--distributed')
    with open(self.log, 'w') as err:
      self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err,
                                   text=True)

  def wait_for(self, text: str, timeout: float = 400) -> None:
    t0 = time.time()
    while text not in self.log.read_text():
      assert self.proc.poll() is None, self.log.read_text()[-3000:]
      assert time.time() - t0 < timeout, f'no {text!r} in {self.log}'
      time.sleep(0.05)

  def finish(self) -> str:
    out, _ = self.proc.communicate(timeout=400)
    assert self.proc.returncode == 0, self.log.read_text()[-3000:]
    return out


def _envs(tmp_path):
  base = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  base.pop('XLA_FLAGS', None)
  one = dict(base, XLA_FLAGS='--xla_force_host_platform_device_count=2')
  port = _free_port()
  two = [dict(base, JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}', JAX_NUM_PROCESSES='2',
              JAX_PROCESS_ID=str(i)) for i in range(2)]
  return one, two


def _saved_steps(workdir):
  return sorted(int(s) for s in os.listdir(workdir / 'checkpoints') if s.isdigit())


def test_sigterm_one_and_two_processes_resume_and_match(tmp_path):
  one_env, two_env = _envs(tmp_path)
  ref, pre, two = tmp_path / 'reference', tmp_path / 'preempted', tmp_path / 'two'
  # Round 1: the uninterrupted reference; one process signalled; two processes, process 1 signalled.
  jobs = {'ref': Job(tmp_path, 'ref', ref, one_env), 'pre': Job(tmp_path, 'pre', pre, one_env)}
  jobs.update({f'two{i}': Job(tmp_path, f'two{i}', two, env) for i, env in enumerate(two_env)})
  jobs['pre'].wait_for(f'step 5/{STEPS}')
  jobs['pre'].proc.send_signal(signal.SIGTERM)
  jobs['two0'].wait_for(f'step 5/{STEPS}')
  jobs['two1'].proc.send_signal(signal.SIGTERM)          # one host told: both must stop
  outs = {k: j.finish() for k, j in jobs.items()}
  jobs_logs = [jobs['ref'].log, jobs['two0'].log]
  for k in ('pre', 'two0', 'two1'):
    assert 'preempted: checkpoint saved at step' in outs[k], (k, outs[k])
  for workdir in (pre, two):
    saved = _saved_steps(workdir)
    assert len(saved) == 1 and 5 <= saved[0] < STEPS, saved   # every host saved the same step
    assert not (workdir / 'metrics.json').exists()
  assert '2 process(es)' in jobs['two0'].log.read_text()
  resume_at = {w: _saved_steps(w)[0] for w in (pre, two)}

  # Round 2: the same commands again resume and finish.
  jobs = {'pre': Job(tmp_path, 'pre2', pre, one_env)}
  jobs.update({f'two{i}': Job(tmp_path, f'two{i}_2', two, env) for i, env in enumerate(two_env)})
  for j in jobs.values():
    j.finish()
  jobs_logs.append(jobs['two0'].log)
  for k, w in (('pre', pre), ('two0', two)):
    assert f'at step {resume_at[w]}' in jobs[k].log.read_text()
    assert 'resumed from' in jobs[k].log.read_text()

  # One process, interrupted and resumed == uninterrupted, bit for bit.
  state = lambda w: trained.restore_eval_variables(str(w / 'checkpoints' / str(STEPS) / 'state'))
  for x, y in zip(jax.tree.leaves(state(ref)), jax.tree.leaves(state(pre))):
    np.testing.assert_array_equal(x, y)
  metrics = {w: json.loads((w / 'metrics.json').read_text()) for w in (ref, pre, two)}
  assert metrics[ref]['map50'] == metrics[pre]['map50'] and metrics[ref]['map'] == metrics[pre]['map']

  # Two processes, interrupted: every step's global-batch loss (process 0 logs it) equals the
  # 1-process run's, before the signal and after the resume. (Their weights agree to float
  # tolerance, test_multiprocess.py; over tens of steps the gloo all-reduce's rounding
  # makes the trajectories drift apart, so the end of this run is not compared.)
  ref_loss, two_loss = _losses(jobs_logs[:1]), _losses(jobs_logs[1:])
  check = [s for s in (1, 2, 3, resume_at[two], resume_at[two] + 1) if s in two_loss]
  assert len(check) == 5, sorted(two_loss)[:10]
  for s in check:
    np.testing.assert_allclose(two_loss[s], ref_loss[s], rtol=1e-5, err_msg=f'step {s}')
  assert json.loads((two / 'metrics.json').read_text())['steps_trained'] == STEPS


def _losses(logs) -> dict[int, float]:
  """{step: training loss} from the console lines of logs (first occurrence of a step)."""
  out = {}
  for log in logs:
    for m in re.finditer(rf'step (\d+)/{STEPS} .*? loss=([0-9.]+)', log.read_text()):
      out.setdefault(int(m.group(1)), float(m.group(2)))
  return out
