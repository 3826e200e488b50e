"""What the per-frame trunk sees: the input representation of a video, chosen by `model.input`.

  'rgb'        the frame, ImageNet-normalised (`efficientnet.preprocess`): what pretrained
               weights expect. 3 channels.
  'foreground' fixed-camera background subtraction: (frame - background) / 127.5, with the
               background the per-pixel median over the video's frames (anything present in fewer
               than half of them, people and events alike, stays out of it). 3 channels.
  'motion'     foreground plus the temporal difference (frame_t - frame_{t-1}) / 127.5. 6 channels.
               A global-pooled per-frame feature cannot see where a person is, so it cannot see
               speed between frames; the difference image carries it (its area grows with speed),
               which is what motion-only events (running, fighting, chasing) are made of.

Hand-written because no kept library ships video input transforms for JAX.
"""

import jax.numpy as jnp

from vad_jax.models.efficientnet import preprocess

CHANNELS = {'rgb': 3, 'foreground': 3, 'motion': 6}


def trunk_inputs(video: jnp.ndarray, mode: str, dtype=jnp.float32,
                 background: jnp.ndarray | None = None) -> jnp.ndarray:
  """video uint8 [B, N, H, W, 3] -> float `dtype` [B, N, H, W, CHANNELS[mode]]. `background`
  float [B, H, W, 3] in pixel units replaces the median of the N frames (streaming: a causal
  running estimate, vad_jax.stream)."""
  if mode not in CHANNELS:
    raise ValueError(f'model.input must be one of {sorted(CHANNELS)}, got {mode!r}')
  if mode == 'rgb':
    return preprocess(video, dtype)
  x = video.astype(jnp.float32)
  bg = (jnp.median(x, axis=1, keepdims=True) if background is None else
        background.astype(jnp.float32)[:, None])
  fg = (x - bg) / 127.5
  if mode == 'foreground':
    return fg.astype(dtype)
  # The first frame has no predecessor: its difference is zero.
  diff = jnp.concatenate([jnp.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]], axis=1) / 127.5
  return jnp.concatenate([fg, diff], axis=-1).astype(dtype)
