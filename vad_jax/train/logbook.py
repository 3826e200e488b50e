"""Training logs: TensorBoard event files (tensorboardX, no TensorFlow) and a console line with
step, losses, steps/s and ETA. Only process 0 writes."""

import time

import jax
from absl import logging


class Logbook:

  def __init__(self, workdir: str, total_steps: int, first_step: int = 0):
    self.total_steps = total_steps
    self.writer = None
    if jax.process_index() == 0:
      from tensorboardX import SummaryWriter
      self.writer = SummaryWriter(logdir=f'{workdir}/tensorboard', flush_secs=10)
    self._t0, self._step0 = time.perf_counter(), first_step

  def scalars(self, step: int, values: dict, prefix: str) -> None:
    if self.writer is not None:
      for k, v in values.items():
        self.writer.add_scalar(f'{prefix}/{k}', float(v), step)

  def train(self, step: int, metrics: dict) -> None:
    """Logs averaged train metrics and a readable progress line."""
    now = time.perf_counter()
    rate = (step - self._step0) / max(now - self._t0, 1e-9)
    self._t0, self._step0 = now, step
    eta = (self.total_steps - step) / rate if rate > 0 else float('inf')
    self.scalars(step, dict(metrics, steps_per_sec=rate), 'train')
    parts = ' '.join(f'{k}={float(v):.4f}' for k, v in metrics.items() if k not in ('lr',))
    logging.info('step %d/%d  %s  lr=%.2e  %.2f steps/s  ETA %s', step, self.total_steps, parts,
                 float(metrics.get('lr', 0.0)), rate, _hms(eta))

  def text(self, step: int, tag: str, text: str) -> None:
    if self.writer is not None:
      self.writer.add_text(tag, text, step)

  def flush(self) -> None:
    if self.writer is not None:
      self.writer.flush()

  def close(self) -> None:
    if self.writer is not None:
      self.writer.close()


def _hms(seconds: float) -> str:
  if seconds == float('inf'):
    return '?'
  s = int(seconds)
  return f'{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}'
