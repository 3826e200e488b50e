"""Causal, frame-by-frame scoring of a live stream (`python -m vad_jax.score --stream`).

Offline scoring sees a whole window at once: a frame's score averages the clips containing it
(future frames included) and the `foreground` / `motion` trunk inputs subtract the window's
median frame. Streaming uses only the past:
  * a clip of the last `clip_len` frames is scored every `eval_stride` frames; a frame's score
    is that of the latest clip ending at or before it (None before the first clip);
  * the background is a running per-pixel estimate, the approximate median filter of McFarlane
    & Schofield (1995): b <- b + step * sign(x - b) a frame (grey levels), started at the first
    frame; it replaces the clip median as the trunk input's background;
  * no test-time views (latency).
A frame classifier (`Scorer.per_frame`, configs/multihead.py) is causal as it is: every frame is
scored on its own as it arrives, with the run's test-time views (one frame costs little; its
streamed scores are then the offline ones), and no background is kept.
Hand-written because no kept library ships causal video scoring for JAX.
"""

from __future__ import annotations

import collections
import time

import numpy as np

__all__ = ['RunningBackground', 'StreamScorer']


class RunningBackground:
  """Per-pixel approximate running median: b += step * sign(x - b) (float32, pixel units)."""

  def __init__(self, step: float = 8.0):
    self.step = float(step)
    self.value = None

  def update(self, frame: np.ndarray) -> np.ndarray:
    x = frame.astype(np.float32)
    if self.value is None:
      self.value = x.copy()
    else:
      self.value += self.step * np.sign(x - self.value)
    return self.value


class StreamScorer:
  """push(frame uint8 [H, W, 3] at the run's size) -> (score, class probabilities [C]) of the
  latest clip (a frame classifier: of this frame), or None before the first clip; `latencies`
  holds, for every frame that ended a clip after the first (which compiles: `compile_seconds`),
  the seconds from push to score."""

  def __init__(self, scorer, background_step: float = 8.0):
    import jax
    run = scorer.run
    self.per_frame = scorer.per_frame
    self.clip_len, self.stride = scorer.clip_len, scorer.stride     # 1, 1 for a frame classifier
    self.background = RunningBackground(background_step)
    self.frames = collections.deque(maxlen=self.clip_len)
    self.count = 0
    self.last = None
    self.latencies: list[float] = []
    self.compile_seconds = None
    if self.per_frame:                      # the offline scorer's jitted views

      def predict_frame(clip, _):           # clip [1, 1, H, W, 3]
        score, probs = (np.asarray(x) for x in scorer.predict_frames(clip[0]))
        return score[0], probs[0]
      self._predict = predict_frame
      return
    variables = jax.device_put(run.variables)

    def predict(clip, background):
      out = run.system.predict(variables, {'video': clip, 'background': background})
      return out['score'][0, -1], jax.nn.softmax(out['logits'][0, -1], -1)
    self._predict = jax.jit(predict)

  def reset(self) -> None:
    """Forgets the stream (background, buffered frames); keeps the compiled scorer."""
    self.background = RunningBackground(self.background.step)
    self.frames.clear()
    self.count, self.last = 0, None

  def push(self, frame: np.ndarray):
    t0 = time.perf_counter()
    bg = None if self.per_frame else self.background.update(frame)
    self.frames.append(frame)
    self.count += 1
    if len(self.frames) == self.clip_len and (self.count - self.clip_len) % self.stride == 0:
      score, probs = self._predict(np.stack(self.frames)[None], None if bg is None else bg[None])
      self.last = (float(score), np.asarray(probs))
      if self.compile_seconds is None:        # the first clip compiles: kept apart
        self.compile_seconds = time.perf_counter() - t0
      else:
        self.latencies.append(time.perf_counter() - t0)
    return self.last
