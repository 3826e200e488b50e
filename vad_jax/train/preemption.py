"""Preemption: SIGTERM (what Cloud TPU sends before maintenance or spot reclamation, and what
`kill` sends) ends training cleanly with a checkpoint every host writes at the same step.

One process: a SIGTERM handler sets a flag; the loop checks it after every step. Several
processes (`jax.distributed`): JAX's preemption service (on by default,
`jax_enable_preemption_service`) catches the signal on any host, and
`multihost_utils.reached_preemption_sync_point(step)` becomes true at the same step on every
host; the loop saves there and stops. A rerun of the same command resumes from that checkpoint
(the grain iterator included), so the finished run equals an uninterrupted one.
"""

from __future__ import annotations

import signal
import threading

__all__ = ['Preemption']


class Preemption:
  """`reached(step)` -> True once the job should checkpoint and stop; `close()` puts the
  previous SIGTERM handler back. Usable as a context manager."""

  def __init__(self):
    from jax._src import distributed
    self.distributed = distributed.global_state.client is not None
    self.signalled = False
    self._previous = None
    if not self.distributed and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.signalled = True

  def reached(self, step: int) -> bool:
    if self.distributed:
      from jax.experimental import multihost_utils
      return bool(multihost_utils.reached_preemption_sync_point(int(step)))
    return self.signalled

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def __enter__(self) -> 'Preemption':
    return self

  def __exit__(self, *exc) -> None:
    self.close()
