"""What the clip-based video systems share (hybrid, svdd_vae): a training example is a video of
K = data.clips_per_video clips (the MIL bag), `batch_size` counts clips, and the focal loss sees
one label per clip of a normal video and one (the MIL witness) per anomalous video."""

import jax.numpy as jnp
import numpy as np

from vad_jax.classes import NORMAL
from vad_jax.losses.focal import class_alpha_from_counts
from vad_jax.models import inputs


def check_clip_config(config) -> None:
  """ValueError naming the key for clip settings no clip-based system can run."""
  d, m = config.data, config.model
  if m.get('input', 'rgb') not in inputs.CHANNELS:
    raise ValueError(f'model.input={m.input!r} must be one of {sorted(inputs.CHANNELS)}')
  if not 0 < d.eval_stride <= d.clip_len:
    raise ValueError(f'data.eval_stride={d.eval_stride} must be in [1, data.clip_len={d.clip_len}]')
  if config.batch_size % d.clips_per_video:
    raise ValueError(f'batch_size={config.batch_size} clips is not a multiple of '
                     f'data.clips_per_video={d.clips_per_video}')


def videos_per_step(config) -> int:
  """batch_size counts clips; a training example is a video of clips_per_video clips."""
  return config.batch_size // config.data.clips_per_video


def focal_label_counts(video_counts, clips_per_video: int) -> np.ndarray:
  """Labels the focal loss sees per class, from training videos per class: every one of the K
  clips of a normal video is labelled Normal, one clip (the witness) of an anomalous video gets
  its class. Focal alpha comes from these counts, not from video counts."""
  counts = np.asarray(video_counts, np.float64).copy()
  counts[NORMAL] *= clips_per_video
  return counts


def focal_alpha(video_counts, clips_per_video: int) -> tuple[float, ...]:
  """Inverse-frequency focal alpha (mean 1) of `focal_label_counts`."""
  alpha = class_alpha_from_counts(jnp.asarray(focal_label_counts(video_counts, clips_per_video),
                                              jnp.float32))
  return tuple(float(a) for a in np.asarray(alpha))
