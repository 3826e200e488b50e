"""Evaluation across 2 real processes (CPU, gloo): outputs meet their own metadata."""

import json
import os
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_two_processes_pair_outputs_with_their_own_videos():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  env = dict(os.environ, PYTHONPATH=ROOT)
  env.pop('XLA_FLAGS', None)
  procs = [subprocess.Popen([sys.executable, os.path.join(ROOT, 'tests', 'multiprocess_worker.py'),
                             str(port), str(i)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for i in range(2)]
  outs = [p.communicate(timeout=240) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
  assert results[0] == results[1]                     # every host gathers the same rows
  r = results[0]
  assert r['index'] == list(range(11))                # padding rows dropped, sorted
  assert r['score'] == [float(i) for i in range(11)]  # each output is its own video's
  assert r['label'] == [i % 3 for i in range(11)]
  assert r['mask0'] == [i % 2 for i in range(11)]
  # The mesh really is not in process order: host-local gathering would mis-pair rows.
  assert r['local_order'] != r['global_order']
