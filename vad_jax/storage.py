"""Run files on a local disk or in a bucket (gs://), each written whole or not at all.

A workdir may be `gs://BUCKET/PATH` (a TPU pod's hosts share nothing else): Orbax writes its
arrays through TensorStore's gcs driver, tensorboardX its event files through
google-cloud-storage, and every other run file (config, metrics, scores, plots) goes through
these functions, which use `etils.epath` (gs:// through gcsfs: `pip install 'vad_jax[gcs]'`).
Local files are written under a temporary sibling name and renamed (atomic on POSIX); a
bucket object upload is atomic by itself. Hand-written because epath has no atomic write.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np

__all__ = ['is_remote', 'resolve', 'join', 'exists', 'is_dir', 'makedirs', 'read_text',
           'read_json', 'write_bytes', 'write_text', 'write_json', 'save_npz', 'load_npz',
           'save_figure']

_REMOTE = ('gs://', 's3://', 'az://')


def is_remote(path) -> bool:
  return str(path).startswith(_REMOTE)


def _epath(path):
  from etils import epath
  return epath.Path(str(path))


def resolve(path) -> str:
  """A bucket path unchanged; a local one absolute, with ~ expanded."""
  path = str(path)
  return path if is_remote(path) else os.path.abspath(os.path.expanduser(path))


def join(path, *names) -> str:
  return '/'.join([str(path).rstrip('/'), *names]) if is_remote(path) else os.path.join(path, *names)


def exists(path) -> bool:
  return _epath(path).exists() if is_remote(path) else os.path.exists(path)


def is_dir(path) -> bool:
  return _epath(path).is_dir() if is_remote(path) else os.path.isdir(path)


def makedirs(path) -> None:
  if is_remote(path):
    _epath(path).mkdir(parents=True, exist_ok=True)
  else:
    os.makedirs(path, exist_ok=True)


def read_text(path) -> str:
  if is_remote(path):
    return _epath(path).read_text()
  with open(path) as f:
    return f.read()


def read_json(path):
  return json.loads(read_text(path))


def write_bytes(path, data: bytes) -> None:
  if is_remote(path):
    _epath(path).write_bytes(data)
    return
  path = str(path)
  base, ext = os.path.splitext(path)
  tmp = f'{base}.tmp{ext}'          # keeps the extension: tools that sniff it still work
  try:
    with open(tmp, 'wb') as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_text(path, text: str) -> None:
  write_bytes(path, text.encode())


def write_json(path, obj, indent: int | None = 2) -> None:
  write_text(path, json.dumps(obj, indent=indent))


def save_npz(path, **arrays) -> None:
  """np.savez_compressed of `arrays` at `path`."""
  buf = io.BytesIO()
  np.savez_compressed(buf, **arrays)
  write_bytes(path, buf.getvalue())


def load_npz(path) -> dict[str, np.ndarray]:
  if is_remote(path):
    data = _epath(path).read_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
      return {k: z[k] for k in z.files}
  with np.load(path, allow_pickle=False) as z:
    return {k: z[k] for k in z.files}


def save_figure(fig, path, dpi: int = 110) -> None:
  """A matplotlib figure as PNG at `path` (tight layout), then closed."""
  import matplotlib.pyplot as plt
  buf = io.BytesIO()
  fig.tight_layout()
  fig.savefig(buf, format='png', dpi=dpi)
  plt.close(fig)
  write_bytes(path, buf.getvalue())
