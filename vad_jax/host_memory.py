"""Keep freed host memory in the process (glibc malloc settings), for XLA:CPU's step buffers.

XLA:CPU allocates each execution's temporary buffer (1.6 GB for the hybrid's full-width train
step at 64x64, 136 frames) with malloc from a worker thread. glibc serves an allocation that
large with a fresh mmap and unmaps it when freed, so every step faults its pages in again and
the kernel zeroes them: 400k page faults and 1.3 s of system CPU a step, a third of the step
(benchmarks/profile_trunk.py prints both). One arena, no mmap and no trimming make freed
memory stay in the heap and the next step reuse it: 0 page faults, 2.58 -> 1.92 s a step.
The cost: the process keeps its peak heap until it exits, which a training or scoring process
does anyway. glibc reads these only from mallopt or the environment, so this is written by
hand (no library exposes it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ['keep_freed_memory']

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_done: bool | None = None


def keep_freed_memory() -> bool:
  """One malloc arena, no mmap'd chunks, never trim: freed memory is reused without page
  faults. Call before JAX starts its threads. Linux / glibc only; elsewhere (or twice) a no-op.
  Returns whether the settings are in effect."""
  global _done
  if _done is not None:
    return _done
  _done = False
  if not sys.platform.startswith('linux'):
    return False
  try:
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    mallopt = libc.mallopt
  except (OSError, AttributeError):      # musl and other C libraries have no mallopt
    return False
  mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
  # -1 disables trimming (mallopt(3)); each call returns 1 on success.
  _done = all(mallopt(p, v) == 1 for p, v in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0),
                                               (_M_TRIM_THRESHOLD, -1)))
  return _done
