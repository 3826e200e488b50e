"""Run files on a local disk and in a bucket (gs://, a local GCS emulator): vad_jax.storage."""

import json
import os
import socket

import numpy as np
import pytest

from vad_jax import storage


@pytest.fixture(scope='module')
def bucket():
  """gcp-storage-emulator (in memory) with bucket 'bkt'; gcsfs and google-cloud-storage reach it
  through STORAGE_EMULATOR_HOST. (Orbax's TensorStore gcs driver is not tested against it: the
  emulator's object generations break TensorStore's conditional writes.)"""
  from gcp_storage_emulator.server import create_server
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  server = create_server('127.0.0.1', port, in_memory=True, default_bucket='bkt')
  server._api.daemon = True      # left running: tensorboardX writers upload again when collected
  server.start()
  saved = {k: os.environ.get(k) for k in ('STORAGE_EMULATOR_HOST', 'GOOGLE_CLOUD_PROJECT')}
  os.environ.update(STORAGE_EMULATOR_HOST=f'http://127.0.0.1:{port}', GOOGLE_CLOUD_PROJECT='test')
  yield 'gs://bkt'
  for k, v in saved.items():
    if v is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = v


@pytest.fixture(params=['local', 'gs'])
def root(request, tmp_path):
  if request.param == 'local':
    return str(tmp_path)
  return f"{request.getfixturevalue('bucket')}/{request.node.name.replace('[', '_').rstrip(']')}"


def test_files_round_trip(root):
  d = storage.join(root, 'run', 'sub')
  storage.makedirs(d)           # a bucket has no empty folders: a prefix exists once it has a file
  storage.write_json(storage.join(d, 'a.json'), {'x': [1, 2.5]})
  assert storage.is_dir(d)
  assert storage.read_json(storage.join(d, 'a.json')) == {'x': [1, 2.5]}
  arrays = {'i': np.arange(7, dtype=np.int32), 'f': np.linspace(0, 1, 5, dtype=np.float32)}
  storage.save_npz(storage.join(d, 'b.npz'), **arrays)
  back = storage.load_npz(storage.join(d, 'b.npz'))
  assert set(back) == set(arrays)
  for k in arrays:
    np.testing.assert_array_equal(back[k], arrays[k])
    assert back[k].dtype == arrays[k].dtype
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots()
  ax.plot([0, 1], [1, 0])
  storage.save_figure(fig, storage.join(d, 'c.png'))
  assert storage.exists(storage.join(d, 'c.png'))
  assert not storage.exists(storage.join(d, 'missing.json'))
  if not storage.is_remote(root):          # written under a temporary name, then renamed
    assert sorted(os.listdir(d)) == ['a.json', 'b.npz', 'c.png']
    with open(os.path.join(d, 'c.png'), 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_local_write_keeps_the_old_file_when_it_fails(tmp_path, monkeypatch):
  path = str(tmp_path / 'metrics.json')
  storage.write_json(path, {'ok': 1})

  def interrupted(*args):
    raise KeyboardInterrupt
  monkeypatch.setattr(storage.os, 'replace', interrupted)     # dies between write and rename
  with pytest.raises(KeyboardInterrupt):
    storage.write_json(path, {'new': 2})
  assert json.load(open(path)) == {'ok': 1}
  assert sorted(os.listdir(tmp_path)) == ['metrics.json']      # no temporary file left


def test_resolve_and_join():
  assert storage.resolve('gs://b/r') == 'gs://b/r'
  assert storage.join('gs://b/r/', 'best', '3') == 'gs://b/r/best/3'
  assert storage.resolve('~/x') == os.path.join(os.path.expanduser('~'), 'x')
  assert os.path.isabs(storage.resolve('runs/a'))


def test_scores_and_tensorboard_in_a_bucket(bucket):
  """The evaluators' score files and the TensorBoard events of a gs:// workdir land there."""
  from etils import epath
  from vad_jax.evaluate.scoring import SplitScores
  from vad_jax.train import logbook
  workdir = f'{bucket}/tb_run'
  book = logbook.Logbook(workdir, total_steps=10)
  book.scalars(1, {'loss': 0.5}, 'train')
  book.close()
  assert list(epath.Path(workdir, 'tensorboard').glob('events.out.tfevents.*'))
  scores = SplitScores(
      video_index=np.array([0]), video_label=np.array([1]), offsets=np.array([0, 6]),
      frame_scores=np.linspace(0, 1, 6, dtype=np.float32),
      frame_labels=np.array([0, 0, 1, 1, 0, 1], np.int8), clip_scores=np.ones((1, 3), np.float32),
      clip_logits=np.zeros((1, 3, 2), np.float32), num_clips=np.array([3]), clip_len=2,
      clip_stride=2)
  scores.save(storage.join(workdir, 'scores_test.npz'))
  back = SplitScores.load(storage.join(workdir, 'scores_test.npz'))
  np.testing.assert_array_equal(back.frame_scores, scores.frame_scores)
  assert back.clip_len == 2 and back.frame_labels.dtype == np.int8
