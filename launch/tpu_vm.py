"""Cloud TPU VM launcher: create a slice, install vad_jax on every host, train, tail, delete.

  python launch/tpu_vm.py SUBCOMMAND --name=NAME --zone=ZONE [--project=P] [--dry-run] ...

  create   on demand, --spot, or --queued (a queued resource, polled until ACTIVE)
  install  on every worker: the code (git clone of --repo at --ref, else a `git archive` of
           this checkout copied with scp), a venv (~/vad_jax_venv), jax[tpu] and vad_jax[gcs];
           safe to rerun
  run      `python -m vad_jax.main` on every worker at once, in the background (nohup), one log
           a host in ~/vad_jax_logs/<run>.log, after checking (`tpu-vm describe`) that the
           slice is --accelerator-type; a multi-host slice needs a gs:// workdir and gets
           --distributed; --config.KEY=VALUE flags pass through
  logs     tail the log on every worker (or --worker=N), --follow
  delete   the TPU VM (or the queued resource and its node with --queued)
  up       create, install, run
--dry-run prints every command, one a line, shell-quoted for copy-paste, and runs nothing.
Defaults come from VAD_TPU_NAME, VAD_TPU_ZONE, VAD_TPU_PROJECT, VAD_TPU_ACCELERATOR_TYPE; set
them once so every subcommand sees the same slice. Standard library only; wraps `gcloud`.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODE, VENV, LOGS = '~/vad_jax', '~/vad_jax_venv', '~/vad_jax_logs'   # on every worker
TPUS = ['gcloud', 'compute', 'tpus']

# Hosts of a slice by accelerator type (cloud.google.com/tpu/docs/v5e, v6e, v5p, v4): v5e and
# v6e names count chips, 8 a host (1, 4, 8 chips: one host); v4 and v5p names count
# TensorCores, 8 a host (4 chips of 2). Only "more than one" matters here; --worker=all reaches
# every VM whatever their number.
_FAMILIES = {  # name prefix: (runtime version, units a host, valid sizes or None for n % 8 == 0)
    'v5litepod': ('v2-alpha-tpuv5-lite', 8, (1, 4, 8, 16, 32, 64, 128, 256)),
    'v6e': ('v2-alpha-tpuv6e', 8, (1, 4, 8, 16, 32, 64, 128, 256)),
    'v5p': ('v2-alpha-tpuv5', 8, None),
    'v4': ('tpu-ubuntu2204-base', 8, None),
}
_POLL_FAILED = ('FAILED', 'SUSPENDING', 'SUSPENDED')
_RUN_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]*')


class LaunchError(Exception):
  """A one-line error for the user (exit status 2)."""


class Poll(list):
  """An argv (`queued-resources describe` of `name`) rerun until it prints ACTIVE."""

  def __init__(self, argv, name: str):
    super().__init__(argv)
    self.name = name


class Expect(list):
  """An argv whose output must equal `value`: the slice `name` is the type we were told."""

  def __init__(self, argv, name: str, value: str, hint: str):
    super().__init__(argv)
    self.name, self.value, self.hint = name, value, hint


def _family(accelerator_type: str):
  m = re.fullmatch(r'([a-z0-9]+?)-(\d+)', accelerator_type)
  if not m or m.group(1) not in _FAMILIES:
    return None, None
  return _FAMILIES[m.group(1)], int(m.group(2))


def hosts(accelerator_type: str) -> int | None:
  """Hosts in a slice of this type; None when the type is not in the table."""
  family, n = _family(accelerator_type)
  if family is None:
    return None
  _, per_host, sizes = family
  if (sizes is not None and n not in sizes) or (sizes is None and (n < 8 or n % 8)):
    return None
  return max(1, math.ceil(n / per_host))


def default_version(accelerator_type: str) -> str | None:
  """The runtime (software) version Cloud TPU documents for JAX on this generation."""
  family, _ = _family(accelerator_type)
  return family[0] if family else None


def _where(a) -> list[str]:
  return [f'--zone={a.zone}'] + ([f'--project={a.project}'] if a.project else [])


def _ssh(a, script: str, worker: str = 'all') -> list[str]:
  return [*TPUS, 'tpu-vm', 'ssh', a.name, *_where(a), f'--worker={worker}', f'--command={script}']


def _version(a) -> str:
  version = a.version or default_version(a.accelerator_type)
  if not version:
    raise LaunchError(f'no default runtime version for --accelerator-type={a.accelerator_type}; '
                      'pass --version (gcloud compute tpus tpu-vm versions list)')
  return version


def create_commands(a) -> list[list[str]]:
  """On demand / --spot: `tpu-vm create` (blocks until ready); --queued: a queued resource
  with one node of the same name, then its state polled until ACTIVE."""
  if not a.queued:
    return [[*TPUS, 'tpu-vm', 'create', a.name, *_where(a),
             f'--accelerator-type={a.accelerator_type}', f'--version={_version(a)}',
             *(['--spot'] if a.spot else [])]]
  if a.valid_until and not re.fullmatch(r'\d+[smhd]', a.valid_until):
    raise LaunchError(f'--valid-until={a.valid_until!r}: expected a duration like 30m, 6h, 2d')
  create = [*TPUS, 'queued-resources', 'create', a.name, f'--node-id={a.name}', *_where(a),
            f'--accelerator-type={a.accelerator_type}', f'--runtime-version={_version(a)}',
            *(['--spot'] if a.spot else []),
            *([f'--valid-until-duration={a.valid_until}'] if a.valid_until else [])]
  return [create, Poll([*TPUS, 'queued-resources', 'describe', a.name, *_where(a),
                        '--format=value(state.state)'], a.name)]


def _source_commands(a) -> tuple[list[list[str]], str]:
  """(local commands, remote shell) that put the code at --ref into ~/vad_jax on a worker."""
  if a.repo:
    ref = shlex.quote(a.ref)
    return [], (f'if [ ! -d {CODE}/.git ]; then rm -rf {CODE}; git clone --quiet '
                f'{shlex.quote(a.repo)} {CODE}; fi; cd {CODE}; git fetch --quiet origin {ref}; '
                'git checkout --quiet --force FETCH_HEAD')
  tarball = os.path.join(tempfile.gettempdir(), f'vad_jax-{a.name}.tar.gz')
  local = [['git', '-C', ROOT, 'archive', '--format=tar.gz', f'--output={tarball}', a.ref],
           [*TPUS, 'tpu-vm', 'scp', tarball, f'{a.name}:vad_jax-src.tar.gz', *_where(a),
            '--worker=all']]
  return local, f'rm -rf {CODE}; mkdir -p {CODE}; tar -xzf ~/vad_jax-src.tar.gz -C {CODE}'


def install_commands(a) -> list[list[str]]:
  """Code, venv and packages on every worker. The venv's Python (--python, default 3.12) comes
  from uv: the TPU images' Ubuntu 22.04 has Python 3.10 and vad_jax needs 3.11+."""
  local, source = _source_commands(a)
  check = 'import jax, socket, vad_jax; print(socket.gethostname(), jax.__version__)'
  script = '; '.join([
      'set -e', source,
      'python3 -m pip install --user --quiet --upgrade uv',
      f'[ -x {VENV}/bin/python ] || ~/.local/bin/uv venv --seed --python '
      f'{shlex.quote(a.python)} {VENV}',
      f'cd {CODE}', f'{VENV}/bin/pip install --quiet -e ".[gcs]" "jax[tpu]"',
      f'{VENV}/bin/python -c "{check}"'])
  return [*local, _ssh(a, script)]


def run_name(a) -> str:
  name = a.run or os.path.basename(a.workdir.rstrip('/')) or 'vad_jax'
  if not _RUN_NAME.fullmatch(name):
    raise LaunchError(f'run name {name!r} (the log file name): use letters, digits, . _ -; '
                      'pass --run')
  return name


def train_argv(a) -> list[str]:
  """The training command every host runs; --distributed when the slice may have >1 host."""
  n = hosts(a.accelerator_type)
  if n != 1 and not a.workdir.startswith('gs://'):
    many = f'has {n} hosts' if n else 'is not a known single-host type'
    raise LaunchError(f'--workdir={a.workdir} is local but {a.accelerator_type} {many}: every '
                      'host writes the same checkpoints, so use a gs://BUCKET/... workdir')
  return ['python', '-m', 'vad_jax.main', f'--config={a.config}', f'--workdir={a.workdir}',
          *(['--distributed'] if n != 1 else []), *a.overrides]


def run_commands(a) -> list[list[str]]:
  """Checks the slice is --accelerator-type, then starts training on every worker in the
  background and returns; refused on a host whose <run>.pid is still a vad_jax.main process
  (a stale pid after a reboot is not)."""
  name, python = run_name(a), f'{VENV}/bin/' + shlex.join(train_argv(a))
  log, pid = f'{LOGS}/{name}.log', f'{LOGS}/{name}.pid'
  script = '; '.join([
      'set -e', f'mkdir -p {LOGS}', f'cd {CODE}',
      f'if [ -f {pid} ] && grep -qs vad_jax.main "/proc/$(cat {pid})/cmdline"; then echo '
      f'"{name} is already running on $(hostname) (pid $(cat {pid}))" >&2; exit 1; fi',
      f'PYTHONUNBUFFERED=1 nohup {python} >> {log} 2>&1 < /dev/null & echo $! > {pid}',
      f'echo "started {name} on $(hostname): pid $(cat {pid}), log {log}"'])
  describe = [*TPUS, 'tpu-vm', 'describe', a.name, *_where(a),
              '--format=value(acceleratorType.basename())']
  return [Expect(describe, a.name, a.accelerator_type, 'pass --accelerator-type={} (or set '
                 'VAD_TPU_ACCELERATOR_TYPE)'), _ssh(a, script)]


def logs_commands(a) -> list[list[str]]:
  """tail of the run's log (default: the newest log) on --worker (default all)."""
  if a.worker != 'all' and not a.worker.isdigit():
    raise LaunchError(f'--worker={a.worker}: expected all or a worker index (0, 1, ...)')
  log = f'{LOGS}/{shlex.quote(a.run)}.log' if a.run else f'"$(ls -t {LOGS}/*.log | head -n 1)"'
  tail = f'tail -n {a.lines}{" -F" if a.follow else ""} {log}'
  return [_ssh(a, f'echo "== $(hostname)"; {tail}', worker=a.worker)]


def delete_commands(a) -> list[list[str]]:
  """The TPU VM, or with --queued the queued resource (--force: its node too)."""
  quiet = ['--quiet'] if a.quiet else []
  if a.queued:
    return [[*TPUS, 'queued-resources', 'delete', a.name, *_where(a), '--force', *quiet]]
  return [[*TPUS, 'tpu-vm', 'delete', a.name, *_where(a), *quiet]]


def up_commands(a) -> list[list[str]]:
  train_argv(a)   # refuse a local workdir before creating anything
  return create_commands(a) + install_commands(a) + run_commands(a)


COMMANDS = {'create': create_commands, 'install': install_commands, 'run': run_commands,
            'logs': logs_commands, 'delete': delete_commands, 'up': up_commands}


def _poll(argv: Poll, seconds: float) -> None:
  start, last = time.monotonic(), None
  while True:
    state = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()
    if state != last:
      print(f'queued resource {argv.name}: {state} ({(time.monotonic() - start) / 60:.0f} min)',
            flush=True)
      last = state
    if state == 'ACTIVE':
      return
    if state in _POLL_FAILED:
      raise LaunchError(f'queued resource {argv.name} is {state}; see `gcloud compute tpus '
                        f'queued-resources describe {argv.name}`, then delete it with --queued')
    time.sleep(seconds)


def execute(commands: list[list[str]], dry_run: bool, poll_seconds: float = 30.0) -> None:
  """Prints each command (shlex.join); unless dry_run, runs it (check=True). Every program is
  looked up on PATH first, so a missing one fails before anything runs."""
  if not dry_run:
    for tool in dict.fromkeys(c[0] for c in commands):
      if shutil.which(tool) is None:
        hint = (' (install the Google Cloud CLI: https://cloud.google.com/sdk/docs/install)'
                if tool == 'gcloud' else '')
        raise LaunchError(f'{tool} not found on PATH{hint}; --dry-run prints the commands')
  for argv in commands:
    print(shlex.join(argv), flush=True)
    if dry_run:
      continue
    if isinstance(argv, Poll):
      _poll(argv, poll_seconds)
    elif isinstance(argv, Expect):
      got = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()
      if got and got != argv.value:
        raise LaunchError(f'{argv.name} is a {got}, not a {argv.value}: ' + argv.hint.format(got))
    else:
      subprocess.run(argv, check=True)


def _parser() -> argparse.ArgumentParser:
  env = os.environ.get
  common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
  common.add_argument('--name', default=env('VAD_TPU_NAME'), required=not env('VAD_TPU_NAME'),
                      help='TPU VM (and queued resource) name [$VAD_TPU_NAME]')
  common.add_argument('--zone', default=env('VAD_TPU_ZONE'), required=not env('VAD_TPU_ZONE'),
                      help='e.g. europe-west4-b [$VAD_TPU_ZONE]')
  common.add_argument('--project', default=env('VAD_TPU_PROJECT'),
                      help="default: gcloud's configured project [$VAD_TPU_PROJECT]")
  common.add_argument('--accelerator-type', default=env('VAD_TPU_ACCELERATOR_TYPE', 'v5litepod-8'),
                      help='e.g. v5litepod-32 [$VAD_TPU_ACCELERATOR_TYPE, v5litepod-8]')
  common.add_argument('--version', default=None,
                      help='runtime version (default by generation: v5litepod '
                      'v2-alpha-tpuv5-lite, v6e v2-alpha-tpuv6e, v5p v2-alpha-tpuv5, v4 '
                      'tpu-ubuntu2204-base)')
  common.add_argument('--dry-run', action='store_true', help='print the commands, run nothing')

  create = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
  create.add_argument('--spot', action='store_true', help='spot capacity (preemptible, cheaper)')
  create.add_argument('--queued', action='store_true',
                      help='a queued resource (with --spot: spot capacity), waited for')
  create.add_argument('--valid-until', default='',
                      help='with --queued: give up after this long (e.g. 6h)')
  create.add_argument('--poll-seconds', type=float, default=30.0,
                      help='with --queued: seconds between state checks')

  install = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
  install.add_argument('--repo', default='', help='git URL to clone on the workers (default: '
                       'copy `git archive` of this checkout; uncommitted changes are not in it)')
  install.add_argument('--ref', default='HEAD', help='branch, tag or commit [HEAD]')
  install.add_argument('--python', default='3.12', help="the venv's Python version [3.12]")

  run = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
  run.add_argument('--config', required=True, help='e.g. configs/hybrid.py (in the checkout)')
  run.add_argument('--workdir', required=True,
                   help='gs://BUCKET/... (required on multi-host slices; a local path is '
                   'relative to ~/vad_jax on the worker)')
  run.add_argument('--run', default='', help='log name (default: the workdir basename)')

  logs = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
  logs.add_argument('--run', default='', help='log name (default: the newest log)')
  logs.add_argument('--worker', default='all', help='all, or a worker index [all]')
  logs.add_argument('--follow', action='store_true', help='keep following (tail -F)')
  logs.add_argument('--lines', type=int, default=100, help='lines of history [100]')

  delete = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
  delete.add_argument('--queued', action='store_true', help='delete the queued resource')
  delete.add_argument('--quiet', action='store_true', help="pass --quiet: don't ask")

  p = argparse.ArgumentParser(prog='python launch/tpu_vm.py', allow_abbrev=False,
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = p.add_subparsers(dest='command', required=True, metavar='SUBCOMMAND')
  for name, parents, text in [
      ('create', [common, create], 'create the slice'),
      ('install', [common, install], 'install vad_jax on every worker (idempotent)'),
      ('run', [common, run], 'start training on every worker (--config.KEY=VALUE passes '
       'through)'),
      ('logs', [common, logs], 'tail the training log'),
      ('delete', [common, delete], 'delete the slice'),
      ('up', [common, create, install, run], 'create + install + run')]:
    sub.add_parser(name, parents=parents, help=text, description=text, allow_abbrev=False)
  return p


def parse(argv: list[str]) -> argparse.Namespace:
  """Flags; --config.KEY=VALUE left over for `run` / `up` become a.overrides."""
  p = _parser()
  a, extra = p.parse_known_args(argv)
  bad = [x for x in extra if a.command not in ('run', 'up') or not re.fullmatch(
      r'--config\.[A-Za-z_][\w.]*=.*', x, re.S)]
  if bad:
    p.error(f'unrecognized arguments: {shlex.join(bad)} (config overrides are '
            '--config.KEY=VALUE, on run and up)')
  a.overrides = extra
  return a


def main(argv: list[str] | None = None) -> int:
  a = parse(sys.argv[1:] if argv is None else argv)
  try:
    execute(COMMANDS[a.command](a), a.dry_run, getattr(a, 'poll_seconds', 30.0))
  except LaunchError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except subprocess.CalledProcessError as e:
    print(f'error: exit status {e.returncode} from: {shlex.join(e.cmd)}', file=sys.stderr)
    return e.returncode or 1
  except KeyboardInterrupt:
    print('interrupted', file=sys.stderr)
    return 130
  return 0


if __name__ == '__main__':
  sys.exit(main())
