"""launch/tpu_vm.py by its dry run: the exact gcloud commands, the remote shell scripts (parsed
by bash, the `run` one executed in a fake home), the refusals, and the executor against a fake
gcloud. No network, no real gcloud, no JAX."""

import importlib.util
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'launch', 'tpu_vm.py')
_spec = importlib.util.spec_from_file_location('tpu_vm', SCRIPT)
tpu_vm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tpu_vm)

TPUS = ['gcloud', 'compute', 'tpus']
POD = ['--name=vad-pod', '--zone=europe-west4-b', '--accelerator-type=v5litepod-32']
WHERE = ['--zone=europe-west4-b']


@pytest.fixture(autouse=True)
def _no_env_defaults(monkeypatch):
  for k in ('VAD_TPU_NAME', 'VAD_TPU_ZONE', 'VAD_TPU_PROJECT', 'VAD_TPU_ACCELERATOR_TYPE'):
    monkeypatch.delenv(k, raising=False)


def dry(capsys, *args):
  """argv lists printed by `main([..., '--dry-run'])`, which must succeed."""
  assert tpu_vm.main([*args, '--dry-run']) == 0
  out = capsys.readouterr().out
  return [shlex.split(line) for line in out.splitlines()]


def remote(argv):
  """The --command= script of an ssh argv."""
  (cmd,) = [x for x in argv if x.startswith('--command=')]
  return cmd[len('--command='):]


def bash_ok(script):
  r = subprocess.run(['bash', '-n', '-c', script], capture_output=True, text=True)
  assert r.returncode == 0, r.stderr


def test_hosts_table():
  assert [tpu_vm.hosts(f'v5litepod-{n}') for n in (1, 4, 8, 16, 32, 64, 256)] == [1, 1, 1, 2, 4,
                                                                                 8, 32]
  assert [tpu_vm.hosts(t) for t in ('v6e-8', 'v6e-16', 'v4-8', 'v4-16', 'v4-32', 'v5p-8',
                                    'v5p-16')] == [1, 2, 1, 2, 4, 1, 2]
  assert [tpu_vm.hosts(t) for t in ('v5litepod-12', 'v4-4', 'v9-8', 'tpu7x-8', 'v5e')] == [None] * 5
  assert tpu_vm.default_version('v6e-16') == 'v2-alpha-tpuv6e'
  assert tpu_vm.default_version('v4-8') == 'tpu-ubuntu2204-base'


def test_create_on_demand_and_spot(capsys):
  base = [*TPUS, 'tpu-vm', 'create', 'vad-pod', *WHERE, '--accelerator-type=v5litepod-32',
          '--version=v2-alpha-tpuv5-lite']
  assert dry(capsys, 'create', *POD) == [base]
  assert dry(capsys, 'create', *POD, '--spot') == [base + ['--spot']]
  assert dry(capsys, 'create', *POD, '--project=my-proj', '--version=v2-alpha-tpuv5-lite') == [
      base[:7] + ['--project=my-proj'] + base[7:]]


def test_create_queued(capsys):
  assert dry(capsys, 'create', *POD, '--queued', '--spot', '--valid-until=6h') == [
      [*TPUS, 'queued-resources', 'create', 'vad-pod', '--node-id=vad-pod', *WHERE,
       '--accelerator-type=v5litepod-32', '--runtime-version=v2-alpha-tpuv5-lite', '--spot',
       '--valid-until-duration=6h'],
      [*TPUS, 'queued-resources', 'describe', 'vad-pod', *WHERE, '--format=value(state.state)']]
  assert dry(capsys, 'create', *POD, '--queued')[0][-1] == '--runtime-version=v2-alpha-tpuv5-lite'
  assert tpu_vm.main(['create', *POD, '--queued', '--valid-until=soon', '--dry-run']) == 2
  assert 'expected a duration' in capsys.readouterr().err


def test_install_from_repo_and_from_this_checkout(capsys):
  (ssh,) = dry(capsys, 'install', *POD, '--repo=https://example.com/v j.git', '--ref=v1.2')
  assert ssh[:7] == [*TPUS, 'tpu-vm', 'ssh', 'vad-pod', *WHERE] and '--worker=all' in ssh
  script = remote(ssh)
  bash_ok(script)
  assert "git clone --quiet 'https://example.com/v j.git' ~/vad_jax" in script
  assert 'git fetch --quiet origin v1.2; git checkout --quiet --force FETCH_HEAD' in script
  assert '[ -x ~/vad_jax_venv/bin/python ] ||' in script          # idempotent venv
  assert 'pip install --quiet -e ".[gcs]" "jax[tpu]"' in script

  archive, scp, ssh = dry(capsys, 'install', *POD)
  assert archive[:3] == ['git', '-C', ROOT] and archive[-1] == 'HEAD'
  tarball = archive[-2].removeprefix('--output=')
  assert scp == [*TPUS, 'tpu-vm', 'scp', tarball, 'vad-pod:vad_jax-src.tar.gz', *WHERE,
                 '--worker=all']
  assert '--worker=all' in ssh and 'tar -xzf ~/vad_jax-src.tar.gz -C ~/vad_jax' in remote(ssh)
  bash_ok(remote(ssh))


def test_run_on_a_pod_is_distributed_and_passes_overrides(capsys):
  describe, ssh = dry(capsys, 'run', *POD, '--config=configs/hybrid.py',
                      '--workdir=gs://my-bucket/runs/hybrid', '--config.num_steps=100',
                      '--config.data.name=with two spaces')
  assert describe == [*TPUS, 'tpu-vm', 'describe', 'vad-pod', *WHERE,
                      '--format=value(acceleratorType.basename())']
  assert '--worker=all' in ssh
  script = remote(ssh)
  bash_ok(script)
  words = shlex.split(script)
  i = words.index('-m')
  assert words[i - 1] == '~/vad_jax_venv/bin/python' and words[i + 1] == 'vad_jax.main'
  assert words[i + 2:i + 7] == [
      '--config=configs/hybrid.py', '--workdir=gs://my-bucket/runs/hybrid', '--distributed',
      '--config.num_steps=100', '--config.data.name=with two spaces']
  assert 'nohup' in words and '>>' in words and '~/vad_jax_logs/hybrid.log' in words


def test_local_workdir_refused_on_a_pod(capsys):
  for cmd in ('run', 'up'):
    assert tpu_vm.main([cmd, *POD, '--config=configs/hybrid.py', '--workdir=runs/h',
                        '--dry-run']) == 2
    out, err = capsys.readouterr()
    assert out == ''                           # nothing printed as a command, not even create
    assert err.count('\n') == 1 and 'gs://' in err and 'has 4 hosts' in err
  assert tpu_vm.main(['run', '--name=n', '--zone=z', '--accelerator-type=v9-1024',
                      '--config=c.py', '--workdir=/tmp/w', '--dry-run']) == 2
  assert 'not a known single-host type' in capsys.readouterr().err


def test_single_host_takes_a_local_workdir(capsys):
  _, ssh = dry(capsys, 'run', '--name=one', '--zone=z', '--config=configs/hybrid.py',
               '--workdir=runs/h1', '--run=try-1')
  words = shlex.split(remote(ssh))
  assert '--workdir=runs/h1' in words and '--distributed' not in words
  assert '~/vad_jax_logs/try-1.log' in words


def test_logs_and_delete(capsys):
  (ssh,) = dry(capsys, 'logs', *POD)
  assert '--worker=all' in ssh and 'tail -n 100 "$(ls -t ~/vad_jax_logs/*.log' in remote(ssh)
  (ssh,) = dry(capsys, 'logs', *POD, '--worker=2', '--follow', '--run=hybrid')
  assert '--worker=2' in ssh and remote(ssh).endswith('tail -n 100 -F ~/vad_jax_logs/hybrid.log')
  bash_ok(remote(ssh))
  assert dry(capsys, 'delete', *POD, '--quiet') == [
      [*TPUS, 'tpu-vm', 'delete', 'vad-pod', *WHERE, '--quiet']]
  assert dry(capsys, 'delete', *POD, '--queued') == [
      [*TPUS, 'queued-resources', 'delete', 'vad-pod', *WHERE, '--force']]


def test_bad_arguments_are_usage_errors(capsys):
  for args in (['create', *POD, '--config.num_steps=3'],                 # not a run flag
               ['run', *POD, '--config=c', '--workdir=gs://b', '--bogus'],
               ['create', '--zone=z']):                                   # no --name
    with pytest.raises(SystemExit) as e:
      tpu_vm.main([*args, '--dry-run'])
    assert e.value.code == 2
  assert capsys.readouterr().out == ''


def test_env_defaults(capsys, monkeypatch):
  monkeypatch.setenv('VAD_TPU_NAME', 'envtpu')
  monkeypatch.setenv('VAD_TPU_ZONE', 'us-east5-a')
  monkeypatch.setenv('VAD_TPU_PROJECT', 'p1')
  assert dry(capsys, 'delete') == [
      [*TPUS, 'tpu-vm', 'delete', 'envtpu', '--zone=us-east5-a', '--project=p1']]


def test_missing_gcloud_is_a_one_line_error(capsys, monkeypatch):
  monkeypatch.setenv('PATH', '')
  assert tpu_vm.main(['create', *POD]) == 2
  out, err = capsys.readouterr()
  assert out == '' and err.count('\n') == 1 and 'gcloud not found on PATH' in err


def test_dry_run_as_a_script():
  r = subprocess.run([sys.executable, SCRIPT, 'up', *POD, '--spot', '--config=configs/hybrid.py',
                      '--workdir=gs://b/runs/h', '--dry-run'], capture_output=True, text=True,
                     timeout=30, env=dict(os.environ, PATH=''))
  assert r.returncode == 0, r.stderr
  lines = r.stdout.splitlines()
  assert [shlex.split(x)[0] for x in lines] == ['gcloud', 'git', 'gcloud', 'gcloud', 'gcloud',
                                                'gcloud']
  assert lines[0].endswith('--version=v2-alpha-tpuv5-lite --spot')


def test_run_script_backgrounds_and_refuses_a_second_start(tmp_path, capsys):
  """The `run` script in a fake home: returns at once (the trainer is detached from the ssh
  session's output), logs, records the pid; a rerun while it lives is refused, one after a
  stale pid (another process) is not."""
  _, ssh = dry(capsys, 'run', '--name=one', '--zone=z', '--config=configs/hybrid.py',
               '--workdir=gs://b/w', '--run=r1', '--config.x=a b')
  (tmp_path / 'vad_jax').mkdir()
  python = tmp_path / 'vad_jax_venv' / 'bin' / 'python'
  python.parent.mkdir(parents=True)
  python.write_text(f'#!{sys.executable}\nimport sys, time\n'
                    'print("args:", *sys.argv[1:], flush=True)\ntime.sleep(30)\n')
  python.chmod(0o755)
  logs = tmp_path / 'vad_jax_logs'
  env = dict(os.environ, HOME=str(tmp_path))

  def start():
    r = subprocess.run(['bash', '-c', remote(ssh)], env=env, capture_output=True, text=True,
                       timeout=10)
    return r, int((logs / 'r1.pid').read_text())

  r, pid = start()
  try:
    assert r.returncode == 0, r.stderr
    assert 'started r1 on' in r.stdout and f'pid {pid}' in r.stdout
    again, _ = start()
    assert again.returncode == 1 and 'r1 is already running' in again.stderr
    for _ in range(100):
      if (logs / 'r1.log').read_text():
        break
      time.sleep(0.05)
    assert (logs / 'r1.log').read_text() == (
        'args: -m vad_jax.main --config=configs/hybrid.py --workdir=gs://b/w --config.x=a b\n')
  finally:
    os.kill(pid, signal.SIGTERM)
  (logs / 'r1.pid').write_text(str(os.getpid()))     # alive, but not a vad_jax.main process
  r, pid = start()
  os.kill(pid, signal.SIGTERM)
  assert r.returncode == 0, r.stderr


@pytest.fixture
def fake_gcloud(tmp_path, monkeypatch):
  """A `gcloud` on PATH that records its argv; `describe` prints the next line of states.txt."""
  (tmp_path / 'states.txt').write_text('')
  gcloud = tmp_path / 'gcloud'
  gcloud.write_text(f'''#!/bin/sh
echo "$*" >> {tmp_path}/calls.txt
case "$*" in *describe*)
  head -n 1 {tmp_path}/states.txt; sed -i 1d {tmp_path}/states.txt;; esac
''')
  gcloud.chmod(0o755)
  monkeypatch.setenv('PATH', f'{tmp_path}{os.pathsep}/usr/bin{os.pathsep}/bin')
  return tmp_path


def test_queued_create_polls_until_active(fake_gcloud, capfd):
  (fake_gcloud / 'states.txt').write_text('WAITING_FOR_RESOURCES\nWAITING_FOR_RESOURCES\n'
                                          'PROVISIONING\nACTIVE\n')
  assert tpu_vm.main(['create', *POD, '--queued', '--poll-seconds=0']) == 0
  out = capfd.readouterr().out
  assert [x.split(': ')[1].split(' (')[0] for x in out.splitlines() if 'queued resource' in x] == [
      'WAITING_FOR_RESOURCES', 'PROVISIONING', 'ACTIVE']
  calls = (fake_gcloud / 'calls.txt').read_text().splitlines()
  assert calls[0].startswith('compute tpus queued-resources create vad-pod') and len(calls) == 5

  (fake_gcloud / 'states.txt').write_text('WAITING_FOR_RESOURCES\nFAILED\n')
  assert tpu_vm.main(['create', *POD, '--queued', '--poll-seconds=0']) == 2
  assert 'is FAILED' in capfd.readouterr().err


def test_run_refuses_a_slice_of_another_type(fake_gcloud, capfd):
  (fake_gcloud / 'states.txt').write_text('v5litepod-32\n')   # what `describe` reports
  assert tpu_vm.main(['run', '--name=vad-pod', '--zone=z', '--config=c.py',
                      '--workdir=gs://b/w']) == 2             # told v5litepod-8 (the default)
  err = capfd.readouterr().err
  assert 'vad-pod is a v5litepod-32, not a v5litepod-8' in err
  assert '--accelerator-type=v5litepod-32' in err
  assert 'ssh' not in (fake_gcloud / 'calls.txt').read_text()
