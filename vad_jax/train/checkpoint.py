"""Checkpoints with Orbax: the last `keep` (for resuming) and the best on validation.

<workdir>/checkpoints/<step>/{state, data, monitors}: train state, grain iterator position and
the monitors' counters and decisions (JSON).
<workdir>/best/<step>/{state}: the state with the best validation metric (`best_metric`, higher
or lower per `best_mode`; metrics stored alongside by Orbax), the one the test split is scored
with.
"""

import grain
import orbax.checkpoint as ocp

from vad_jax import storage


class Checkpoints:

  def __init__(self, workdir: str, keep: int, best_metric: str, best_mode: str = 'max'):
    if best_mode not in ('max', 'min'):
      raise ValueError(f"best_mode={best_mode!r}; expected 'max' or 'min'")
    workdir = storage.resolve(workdir)
    self.best_metric, self.best_mode = best_metric, best_mode
    self.last = ocp.CheckpointManager(
        storage.join(workdir, 'checkpoints'),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        item_names=('state', 'data', 'monitors'))
    self.best = ocp.CheckpointManager(
        storage.join(workdir, 'best'),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True, best_fn=lambda m: m[best_metric], best_mode=best_mode),
        item_names=('state',))

  def latest_step(self) -> int | None:
    return self.last.latest_step()

  def save(self, step: int, state, data_iter, monitors: dict | None = None) -> None:
    self.last.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iter),
        monitors=ocp.args.JsonSave(monitors or {})))

  def restore(self, state, data_iter):
    """Restores the latest checkpoint into `state`'s structure and shardings; moves `data_iter`.
    -> (state, monitors JSON)."""
    step = self.last.latest_step()
    out = self.last.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(state), data=grain.checkpoint.CheckpointRestore(data_iter),
        monitors=ocp.args.JsonRestore()))
    return out['state'], dict(out['monitors'] or {})

  def is_better(self, value: float, best: float | None) -> bool:
    if best is None:
      return True
    return value > best if self.best_mode == 'max' else value < best

  def best_value(self) -> float | None:
    """The best validation metric saved so far (None before the first evaluation)."""
    step = self.best.best_step()
    if step is None:
      return None
    return float(self.best.metrics(step)[self.best_metric])

  def save_best(self, step: int, state, value: float) -> None:
    self.best.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
                   metrics={self.best_metric: float(value)})

  def restore_best(self, state):
    step = self.best.best_step()
    if step is None:
      raise FileNotFoundError('no best checkpoint: the run never evaluated on validation')
    out = self.best.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(state)))
    return step, out['state']

  def wait(self) -> None:
    self.last.wait_until_finished()
    self.best.wait_until_finished()

  def close(self) -> None:
    self.last.close()
    self.best.close()
