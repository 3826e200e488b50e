"""Convolutional VAE on frames (seed 001's image-level `ConvolutionalVAE`, 64x64 in the seed).

For frames x [N, H, W, C] in [-1, 1] and L = len(channels) (H, W divisible by 2**L):

  encoder  L x (Conv 4x4 stride 2 -> LeakyReLU(0.2))   [N, H/2**L, W/2**L, channels[-1]]
  latent   flatten -> Dense(latent) twice: mu, logvar   [N, latent]
  z        mu + exp(logvar / 2) * eps ('vae' rng) in training, mu at evaluation
  decoder  Dense -> reshape to the encoder's last map    [N, H/2**L, W/2**L, channels[-1]]
           L x ConvTranspose 4x4 stride 2, channels mirrored (channels[-2], .., channels[0], C),
           LeakyReLU(0.2) between, tanh after the last  [N, H, W, C]

No normalisation layers: a frame's reconstruction (its anomaly score) then depends on that frame
alone, never on what else is in the batch, training and evaluation run the same function, and the
module has no mutable state. `frame_errors` gives the per-frame loss terms / scores.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vad_jax.models.heads import reparameterize

Dtype = Any

__all__ = ['ConvVAE', 'frame_errors']


def frame_errors(recon: jnp.ndarray, x: jnp.ndarray, mu: jnp.ndarray,
                 logvar: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Per-frame VAE terms, float32: recon, x [N, H, W, C]; mu, logvar [N, L] ->
  (mse [N] = mean over pixels and channels of (recon - x)**2,
   kl [N] = -0.5 * sum_L(1 + logvar - mu**2 - exp(logvar)))."""
  f32 = lambda a: jnp.asarray(a).astype(jnp.float32)
  d2 = jnp.square(f32(recon) - f32(x))
  mse = d2.reshape(d2.shape[0], -1).mean(-1)
  mu, logvar = f32(mu), f32(logvar)
  kl = -0.5 * jnp.sum(1.0 + logvar - jnp.square(mu) - jnp.exp(logvar), axis=-1)
  return mse, kl


class ConvVAE(nn.Module):
  """See the module docstring. `__call__(x [N,H,W,C], *, train)` -> (recon [N,H,W,C], mu [N,L],
  logvar [N,L]), all in `dtype`. `train=True` needs the 'vae' rng. Parameters: `enc0`..,
  `mu`, `logvar`, `dec_in`, `dec0`.. (the last `dec` outputs C channels)."""
  channels: tuple[int, ...] = (32, 64, 128, 256)
  latent: int = 128
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool):
    if x.ndim != 4:
      raise ValueError(f'ConvVAE reads frames [N, H, W, C], got shape {x.shape}')
    if not self.channels:
      raise ValueError('ConvVAE: channels must name at least one encoder layer')
    n, h, w, c = x.shape
    f = 2 ** len(self.channels)
    if h % f or w % f:
      raise ValueError(f'ConvVAE with {len(self.channels)} stride-2 layers needs H and W '
                       f'divisible by {f}, got {h}x{w}')
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    act = lambda y: nn.leaky_relu(y, 0.2)

    y = x.astype(self.dtype)
    for i, ch in enumerate(self.channels):
      y = act(nn.Conv(ch, (4, 4), (2, 2), padding=((1, 1), (1, 1)), **kw, name=f'enc{i}')(y))
    hl, wl = h // f, w // f
    flat = y.reshape(n, -1)
    mu = nn.Dense(self.latent, **kw, name='mu')(flat)
    logvar = nn.Dense(self.latent, **kw, name='logvar')(flat)
    z = reparameterize(self.make_rng('vae'), mu, logvar) if train else mu

    y = nn.Dense(hl * wl * self.channels[-1], **kw, name='dec_in')(z)
    y = y.reshape(n, hl, wl, self.channels[-1])
    outs = tuple(reversed(self.channels[:-1])) + (c,)
    for i, ch in enumerate(outs):
      y = nn.ConvTranspose(ch, (4, 4), (2, 2), padding='SAME', **kw, name=f'dec{i}')(y)
      y = act(y) if i < len(outs) - 1 else jnp.tanh(y)
    return y, mu, logvar
