"""PyAV decode/encode and image frames: round trip, the frame-rate mapping on real encoded
video, resizing, and bad files raising VideoError naming the file."""

import os

import av
import numpy as np
import pytest
from PIL import Image

from tests import fixtures
from vad_jax.data import video


def _coded(n: int, h: int = 32, w: int = 48) -> np.ndarray:
  """uint8 [n, h, w, 3]: frame i is flat grey 4 i + 8 (a brightness code survives H.264)."""
  return np.broadcast_to((np.arange(n) * 4 + 8).astype(np.uint8)[:, None, None, None],
                         (n, h, w, 3)).copy()


def test_round_trip_keeps_count_size_and_content(tmp_path):
  frames = fixtures._render('Fighting', 'train', 0, 24, (32, 48), 0)['frames']
  path = str(tmp_path / 'clip.mp4')
  video.write_video(path, frames, 30.0)
  out, fps, n = video.decode(path)
  assert (out.dtype, out.shape, fps, n) == (np.uint8, frames.shape, 30.0, 24)
  assert np.abs(out.astype(np.float32) - frames).mean() < 12     # lossy, but close
  assert os.listdir(tmp_path) == ['clip.mp4']                     # no temporary left


@pytest.mark.parametrize('src,dst', [(30.0, 10.0), (30.0, 12.0), (25.0, 10.0), (30.0, 30.0),
                                     (30.0, 60.0), (30.0, None)])
def test_resampling_keeps_exactly_the_mapped_frames(tmp_path, src, dst):
  n = 45
  path = str(tmp_path / 'coded.mp4')
  video.write_video(path, _coded(n), src)
  out, fps, total = video.decode(path, dst)
  keep = video.resample_indices(total, fps, dst)
  assert (total, fps, len(out)) == (n, src, len(keep))
  code = np.round((out.mean(axis=(1, 2, 3)) - 8) / 4).astype(int)
  np.testing.assert_array_equal(code, keep)


def test_resize_and_non_ascii_path(tmp_path):
  path = str(tmp_path / 'камера_监控 é.avi')
  video.write_video(path, _coded(12), 30.0, codec='mpeg4')
  out, _, n = video.decode(path, None, (16, 24))
  assert out.shape == (12, 16, 24, 3) and n == 12
  np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), np.arange(12) * 4 + 8, atol=3)


def test_bad_files_raise_video_error_naming_the_file(tmp_path):
  garbage = str(tmp_path / 'garbage.mp4')
  fixtures.write_garbage(garbage)
  empty = str(tmp_path / 'empty.mp4')
  open(empty, 'wb').close()
  no_frames = str(tmp_path / 'no_frames.mp4')     # a container with a stream and no frame
  with av.open(no_frames, 'w') as out:
    s = out.add_stream('libx264', rate=30)
    s.width, s.height, s.pix_fmt = 16, 16, 'yuv420p'
    out.start_encoding()
  cut = str(tmp_path / 'cut.mp4')                 # MP4 cut before its index: unusable
  video.write_video(cut, _coded(30), 30.0)
  fixtures.truncate_file(cut, 0.5)
  for path in (garbage, empty, no_frames, cut, str(tmp_path / 'missing.mp4')):
    with pytest.raises(video.VideoError, match=os.path.basename(path)):
      video.decode(path)


def test_truncated_avi_keeps_the_frames_before_the_damage(tmp_path):
  path = str(tmp_path / 'cut.avi')
  frames = np.random.default_rng(0).integers(0, 255, (60, 32, 32, 3), dtype=np.uint8)
  video.write_video(path, frames, 30.0, codec='mpeg4')
  fixtures.truncate_file(path, 0.6)
  out, _, n = video.decode(path)
  assert 0 < len(out) == n < 60


def test_write_video_refuses_odd_sizes_and_no_frames_without_leftovers(tmp_path):
  with pytest.raises(ValueError, match='even'):
    video.write_video(str(tmp_path / 'odd.mp4'), np.zeros((4, 15, 16, 3), np.uint8), 30.0)
  with pytest.raises(ValueError, match='no frames'):
    video.write_video(str(tmp_path / 'none.mp4'), np.zeros((0, 16, 16, 3), np.uint8), 30.0)
  assert os.listdir(tmp_path) == []


def test_read_frame_image(tmp_path):
  img = np.random.default_rng(1).integers(0, 255, (20, 30, 3), dtype=np.uint8)
  png, grey = str(tmp_path / 'f_0.png'), str(tmp_path / 'g_0.png')
  Image.fromarray(img).save(png)
  Image.fromarray(img[..., 0]).save(grey)
  np.testing.assert_array_equal(video.read_frame_image(png), img)
  assert video.read_frame_image(grey).shape == (20, 30, 3)
  fixtures.truncate_file(png, 0.5)
  with pytest.raises(video.VideoError, match='f_0.png'):
    video.read_frame_image(png)
  with pytest.raises(video.VideoError, match='nope.png'):
    video.read_frame_image(str(tmp_path / 'nope.png'))
