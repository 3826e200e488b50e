"""vad_jax.host_memory: with keep_freed_memory(), a freed large buffer is reused without page
faults (what XLA:CPU's per-step temporary buffer needs); without it glibc unmaps it and the next
allocation faults every page in again. Each case runs in a fresh process (malloc settings are
process-wide)."""

import subprocess
import sys

import pytest

CHILD = r'''
import ctypes, resource, sys
libc = ctypes.CDLL('libc.so.6')
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
if sys.argv[1] == 'keep':
    from vad_jax.host_memory import keep_freed_memory
    assert keep_freed_memory() and keep_freed_memory()   # twice: a no-op returning the same
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    p = libc.malloc(256 << 20)          # 256 MiB, far above glibc's largest mmap threshold
    ctypes.memset(p, 1, 256 << 20)      # touch every page
    libc.free(p)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(faults[-1])
'''


def faults_of_a_reallocation(mode: str) -> int:
  out = subprocess.run([sys.executable, '-c', CHILD, mode], capture_output=True, text=True,
                       check=True)
  return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc mallopt: Linux only')
def test_freed_memory_is_reused_without_page_faults():
  pages = (256 << 20) // 4096
  assert faults_of_a_reallocation('default') > pages // 2     # glibc: mmap + munmap each time
  assert faults_of_a_reallocation('keep') < pages // 100      # reused in place
