"""Dense (ungrouped) 2-D convolution computed as a matmul on CPU.

XLA:CPU runs the weight gradient of a convolution as another convolution whose window is the
whole feature map, plus layout transposes: for EfficientNet-B0's 1x1 expand conv 16 -> 96 on
136 frames of 32x32, forward + backward took 596 ms as a convolution and 69 ms as a dot on
[N*H*W, C] (benchmarks/profile_trunk.py). So on CPU a 1x1 conv is a dot on the flattened
pixels and a kxk conv (the EfficientNet stem) a dot on its k*k*C patches (im2col, from
strided slices); elsewhere XLA's native convolution, which accelerators run well.
:class:`Conv` holds the same parameters as ``flax.linen.Conv`` (``kernel`` [kh,kw,Cin,F],
``bias`` [F]), so checkpoints and weight converters do not see the difference.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
import flax.linen as nn

from vad_jax.models.depthwise import Padding

__all__ = ["Conv", "conv2d", "resolve_conv_impl"]


def resolve_conv_impl(impl: str) -> str:
  """'auto' -> 'dot' on CPU, 'xla' elsewhere."""
  if impl == "auto":
    return "dot" if jax.default_backend() == "cpu" else "xla"
  if impl not in ("xla", "dot"):
    raise ValueError(f"unknown conv impl {impl!r} (expected 'auto', 'xla' or 'dot')")
  return impl


def conv2d(x: jax.Array, kernel: jax.Array, strides: int = 1,
           padding: Padding = ((0, 0), (0, 0)), impl: str = "auto") -> jax.Array:
  """Conv. x [N,H,W,Cin], kernel [kh,kw,Cin,F] -> [N,Ho,Wo,F]; explicit zero ``padding``.

  ``impl``: 'xla' (lax.conv_general_dilated), 'dot' (matmul: 1x1 on [N*H*W, Cin], kxk on
  im2col patches [N*Ho*Wo, kh*kw*Cin]) or 'auto'.
  """
  kh, kw, cin, f = kernel.shape
  if cin != x.shape[-1]:
    raise ValueError(f"kernel shape {kernel.shape} incompatible with input channels {x.shape[-1]}")
  s = int(strides)
  padding = tuple(tuple(int(p) for p in pp) for pp in padding)
  if resolve_conv_impl(impl) == "xla":
    return lax.conv_general_dilated(x, kernel, (s, s), padding,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))
  if any(padding[0] + padding[1]):
    x = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
  n, hp, wp, _ = x.shape
  ho, wo = (hp - kh) // s + 1, (wp - kw) // s + 1
  if kh == kw == 1:
    patches = x if s == 1 else x[:, :(ho - 1) * s + 1:s, :(wo - 1) * s + 1:s]
  else:  # [N,Ho,Wo,kh*kw*Cin], taps in kernel (i, j, c) order
    patches = jnp.concatenate(
        [lax.slice(x, (0, i, j, 0), (n, i + (ho - 1) * s + 1, j + (wo - 1) * s + 1, cin),
                   (1, s, s, 1)) for i in range(kh) for j in range(kw)], axis=-1)
  y = lax.dot_general(patches.reshape(-1, kh * kw * cin), kernel.reshape(kh * kw * cin, f),
                      (((1,), (0,)), ((), ())))
  return y.reshape(n, ho, wo, f)


class Conv(nn.Module):
  """``nn.Conv`` (no groups, no dilation) with a selectable implementation. [N,H,W,Cin] ->
  [N,Ho,Wo,features]. ``padding``: explicit ((top, bottom), (left, right)).

  Params ``kernel`` [k,k,Cin,features] and (``use_bias``) ``bias`` [features], initialised
  as nn.Conv would (same rng, same values).
  """

  features: int
  kernel_size: int = 1
  strides: int = 1
  padding: Padding = ((0, 0), (0, 0))
  use_bias: bool = False
  impl: str = "auto"
  kernel_init: Any = nn.initializers.lecun_normal()
  bias_init: Any = nn.initializers.zeros_init()
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features),
                        self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) \
        if self.use_bias else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = conv2d(x, kernel, self.strides, self.padding, self.impl)
    return y if bias is None else y + bias
