"""Person-detection frames of the built-in synthetic videos (seed 004), split by video.

`PersonFrames(spec, split, K)` is `SyntheticFrames` (K evenly spaced frames of every video of
the split, rendered once into memory) with each frame's person boxes as the renderer draws them:

  image uint8 [H, W, 3]   boxes float32 [P, 4] normalised (x0, y0, x1, y1), valid boxes first,
  box_valid bool [P]      label int32 = number of people     index, video, frame int32

(P = spec.max_people). Every visible person of a frame has a box (walkers, and the extra person
some events add while there is a free slot). `labels()` (people a frame) needs the boxes, so it
renders the split. Training examples pass through `augment` (vad_jax.data.box_augment: flips,
zoom and shift move the boxes with the pixels) when set.
"""

from __future__ import annotations

import numpy as np

from vad_jax.data.frames import SyntheticFrames

__all__ = ['PersonFrames', 'pack_boxes']

OBJECT_NAMES = ('person',)


def pack_boxes(boxes: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """boxes [..., P, 4], valid [..., P] -> the same with valid rows first (order kept), other
  rows zero."""
  order = np.argsort(~valid, axis=-1, kind='stable')
  valid = np.take_along_axis(valid, order, -1)
  boxes = np.take_along_axis(boxes, order[..., None], -2) * valid[..., None]
  return boxes.astype(np.float32), valid


class PersonFrames(SyntheticFrames):
  """Frames with person boxes under the Source contract (module docstring)."""
  class_names = OBJECT_NAMES
  augment = None        # callable(example, rng) -> example, training only

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self._boxes = None

  def __getstate__(self):
    state = super().__getstate__()
    state['_boxes'] = None
    return state

  def _render_video(self, v: int):
    video = self.videos[v]
    t = self.frame_index
    return video['frames'][t], video['boxes'][t], video['box_valid'][t]

  def _render(self) -> np.ndarray:
    n, k, spec = len(self.videos), self.frames_per_video, self.spec
    pixels = np.empty((len(self), spec.height, spec.width, 3), np.uint8)
    boxes = np.zeros((len(self), spec.max_people, 4), np.float32)
    valid = np.zeros((len(self), spec.max_people), bool)
    from concurrent.futures import ThreadPoolExecutor
    from tqdm import tqdm
    with tqdm(total=n, unit='video', desc=f'rendering {self.split} frames',
              disable=n <= 16) as bar, ThreadPoolExecutor(self.render_threads) as pool:
      for v, (f, b, ok) in enumerate(pool.map(self._render_video, range(n))):
        pixels[v * k:(v + 1) * k] = f
        boxes[v * k:(v + 1) * k], valid[v * k:(v + 1) * k] = pack_boxes(b, ok)
        bar.update()
    boxes.setflags(write=False)
    valid.setflags(write=False)
    self._boxes = (boxes, valid)
    return pixels

  def boxes(self) -> tuple[np.ndarray, np.ndarray]:
    """(float32 [len, P, 4], bool [len, P]) of every example (renders the split once)."""
    if self._boxes is None:
      self.pixels()
    return self._boxes

  def labels(self) -> np.ndarray:
    if self._labels is None:
      self._labels = self.boxes()[1].sum(-1).astype(np.int32)
    return self._labels

  def class_counts(self) -> np.ndarray:
    """int64 [1]: the person boxes of the split."""
    return np.array([int(self.labels().sum())], np.int64)

  def __getitem__(self, index: int) -> dict:
    example = super().__getitem__(index)
    boxes, valid = self.boxes()
    example['boxes'] = boxes[int(index)].copy()
    example['box_valid'] = valid[int(index)].copy()
    example['label'] = np.int32(valid[int(index)].sum())
    return example

  def train_transform(self, example: dict, rng: np.random.Generator) -> dict:
    return self.augment(example, rng) if self.augment else example
