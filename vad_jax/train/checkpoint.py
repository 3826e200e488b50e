"""Checkpoints with Orbax: the last `keep` (for resuming) and the best on validation.

<workdir>/checkpoints/<step>/{state, data}: train state + grain iterator position.
<workdir>/best/<step>/{state}: the state with the highest validation metric (metrics stored
alongside by Orbax), the one the final test evaluation uses.
"""

import os

import grain
import orbax.checkpoint as ocp


class Checkpoints:

  def __init__(self, workdir: str, keep: int, best_metric: str):
    workdir = os.path.abspath(workdir)
    self.best_metric = best_metric
    self.last = ocp.CheckpointManager(
        os.path.join(workdir, 'checkpoints'),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        item_names=('state', 'data'))
    self.best = ocp.CheckpointManager(
        os.path.join(workdir, 'best'),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True, best_fn=lambda m: m[best_metric], best_mode='max'),
        item_names=('state',))

  def latest_step(self) -> int | None:
    return self.last.latest_step()

  def save(self, step: int, state, data_iter) -> None:
    self.last.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iter)))

  def restore(self, state, data_iter):
    """Restores the latest checkpoint into `state`'s structure and shardings; moves `data_iter`."""
    step = self.last.latest_step()
    out = self.last.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(state), data=grain.checkpoint.CheckpointRestore(data_iter)))
    return out['state']

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
