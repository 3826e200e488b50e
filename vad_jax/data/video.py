"""Video files in and out (PyAV), and the frame-rate mapping every real-data path shares.

Frame-rate mapping (one definition, used by decoding AND by per-frame ground truth): output
frame j of a video resampled from `src_fps` to `dst_fps` shows source frame
``floor(j * src_fps / dst_fps)`` (0-based), for every j whose source frame exists. Upsampling is
never done: dst_fps >= src_fps (or None) keeps every source frame. An annotation on source
frames therefore follows the video exactly: truth[j] = source_truth[resample_indices(...)[j]].
"""

from __future__ import annotations

import os

import numpy as np

from vad_jax.data.source import DataError


def resample_indices(num_frames: int, src_fps: float, dst_fps: float | None) -> np.ndarray:
  """int64 [M]: the source frame (0-based) shown by each output frame (see the module docstring)."""
  if num_frames < 0:
    raise ValueError(f'num_frames must be >= 0, got {num_frames}')
  if not dst_fps or dst_fps >= src_fps:
    return np.arange(num_frames, dtype=np.int64)
  if src_fps <= 0 or dst_fps <= 0:
    raise ValueError(f'fps must be > 0, got src {src_fps}, dst {dst_fps}')
  step = float(src_fps) / float(dst_fps)
  m = int(np.ceil(num_frames / step - 1e-9))
  idx = np.floor(np.arange(m) * step + 1e-9).astype(np.int64)
  return idx[idx < num_frames]


class VideoError(DataError):
  """A video or frame file that cannot be used (the message names the file)."""


def _open(path: str):
  """-> (PyAV container, its first video stream, frames a second: 30 when the file does not
  say); VideoError for a file PyAV cannot open or without a video stream."""
  import av
  try:
    container = av.open(path)
  except Exception as e:  # noqa: BLE001  (PyAV raises many error types for bad files)
    raise VideoError(f'{path}: cannot open as a video: {e}') from None
  if not container.streams.video:
    container.close()
    raise VideoError(f'{path}: has no video stream')
  stream = container.streams.video[0]
  return container, stream, float(stream.average_rate or stream.guessed_rate or 0) or 30.0


def decode(path: str, fps: float | None = None,
           size: tuple[int, int] | None = None) -> tuple[np.ndarray, float, int]:
  """-> (frames uint8 [M, H, W, 3], src_fps, num_src_frames) of the first video stream.

  Keeps output frame j = source frame floor(j * src_fps / fps), selected while decoding (the
  source video is never held whole); equals resample_indices(num_src_frames, src_fps, fps).
  size=(H, W) resizes with FFmpeg's swscale (bilinear). A file PyAV cannot open, without a
  video stream or without a decodable frame raises VideoError; a file damaged part-way gives
  the frames decoded before the damage (a truncated download keeps what it has).
  """
  container, stream, src_fps = _open(path)
  with container:
    step = None if not fps or fps >= src_fps else src_fps / fps
    frames, n, want = [], 0, 0
    kw = {'format': 'rgb24'}
    if size is not None:
      kw.update(height=int(size[0]), width=int(size[1]))
    try:
      for frame in container.decode(stream):
        if step is None or n == want:
          frames.append(frame.to_ndarray(**kw))
          if step is not None:
            want = int(np.floor(len(frames) * step + 1e-9))
        n += 1
    except Exception as e:  # noqa: BLE001
      if not n:
        raise VideoError(f'{path}: no decodable frame: {e}') from None
  if not frames:
    raise VideoError(f'{path}: has no frames')
  return np.stack(frames), src_fps, n


class VideoWriter:
  """Streams uint8 [H, W, 3] frames into an MP4 (H.264, yuv420p; codec 'mpeg4' for AVI),
  atomically: frames go to a temporary name in the same folder, renamed on a clean `close`
  (an error or an exception inside `with` removes it: never a half-written video)."""

  def __init__(self, path: str, fps: float, codec: str = 'libx264'):
    self.path, self.fps, self.codec = path, fps, codec
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    self.tmp = os.path.join(folder, f'.tmp-{os.getpid()}-{name}')
    self._out = self._stream = None
    self.frames = 0

  def write(self, frame: np.ndarray) -> None:
    import av
    frame = np.asarray(frame, np.uint8)
    h, w, _ = frame.shape
    if self._out is None:
      if h % 2 or w % 2:
        raise ValueError(f'{self.path}: H.264/MPEG-4 need even frame sizes, got {h}x{w}')
      self._out = av.open(self.tmp, 'w',
                          format=os.path.splitext(self.path)[1].lstrip('.') or 'mp4')
      self._stream = self._out.add_stream(self.codec, rate=int(round(self.fps)))
      self._stream.width, self._stream.height, self._stream.pix_fmt = w, h, 'yuv420p'
    for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')):
      self._out.mux(packet)
    self.frames += 1

  def close(self) -> None:
    if self._out is None:
      raise ValueError(f'{self.path}: no frames to write')
    for packet in self._stream.encode():
      self._out.mux(packet)
    self._out.close()
    self._out = None
    os.replace(self.tmp, self.path)

  def abort(self) -> None:
    if self._out is not None:
      self._out.close()
      self._out = None
    if os.path.exists(self.tmp):
      os.remove(self.tmp)

  def __enter__(self) -> 'VideoWriter':
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    if exc_type is None:
      self.close()
    else:
      self.abort()


def write_video(path: str, frames: np.ndarray, fps: float, codec: str = 'libx264') -> None:
  """Writes uint8 [N, H, W, 3] as MP4 (H.264, yuv420p) or with codec 'mpeg4' (AVI); atomic (a
  temporary name in the same folder, then renamed)."""
  frames = np.asarray(frames, np.uint8)
  if not len(frames):
    raise ValueError(f'{path}: no frames to write')
  with VideoWriter(path, fps, codec) as out:
    for f in frames:
      out.write(f)


def iter_frames(path: str):
  """Yields (frame uint8 [H, W, 3], time in seconds) of the first video stream while decoding
  (the video is never held whole); VideoError for a file PyAV cannot open or without frames."""
  import av
  container, stream, fps = _open(path)
  with container:
    n = 0
    try:
      for frame in container.decode(stream):
        t = float(frame.time) if frame.time is not None else n / fps
        yield frame.to_ndarray(format='rgb24'), t
        n += 1
    except av.FFmpegError as e:
      if not n:
        raise VideoError(f'{path}: no decodable frame: {e}') from None
  if not n:
    raise VideoError(f'{path}: has no frames')


def video_fps(path: str) -> float:
  """Frames a second of the first video stream (30 when the file does not say)."""
  container, _, fps = _open(path)
  container.close()
  return fps


def read_frame_image(path: str) -> np.ndarray:
  """uint8 [H, W, 3] of a PNG/JPEG frame (Pillow); a truncated or corrupt image raises
  VideoError (truncated images are never silently completed)."""
  from PIL import Image
  try:
    with Image.open(path) as im:
      im.load()
      return np.asarray(im.convert('RGB'))
  except (OSError, ValueError, SyntaxError) as e:
    raise VideoError(f'{path}: cannot read the image: {e}') from None
