"""CBAM-style dual attention (Woo et al. 2018) as seed 002 describes it, NHWC.

  channel  a_c = sigmoid(MLP(mean_hw x) + MLP(max_hw x)),  shared MLP C -> hidden -> C   [N, C]
           x <- x * a_c[:, None, None, :]
  spatial  s = concat[mean_c x, max_c x]                                               [N, h, w, 2]
           a_s = sigmoid(Conv1x1(1)(relu(BN(Conv3x3(hid)(relu(BN(Convkxk(hid)(s))))))))  [N, h, w]
           x <- x * a_s[..., None]

The seed's spatial branch is a "3-layer convolution with batch normalization" (CBAM's is one
7x7 conv). Convolutions before a BatchNorm have no bias. BatchNorm uses batch statistics and
updates 'batch_stats' with ``train=True`` (make it mutable), running averages otherwise;
``bn_momentum`` 0.9 / ``bn_epsilon`` 1e-5 are PyTorch's defaults (momentum 0.1 there).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

Dtype = Any

__all__ = ['ChannelAttention', 'SpatialAttention', 'CBAM']


class ChannelAttention(nn.Module):
  """Squeeze-excite over average AND max pooled vectors. x [N,h,w,C] -> (x * a, a f32 [N, C]).

  Params: ``fc1`` Dense(max(C // reduction, min_hidden)), ``fc2`` Dense(C), both with bias,
  shared by the two pooled vectors.
  """
  reduction: int = 16
  min_hidden: int = 8
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray):
    c = x.shape[-1]
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    fc1 = nn.Dense(max(c // self.reduction, self.min_hidden), **kw, name='fc1')
    fc2 = nn.Dense(c, **kw, name='fc2')
    mlp = lambda v: fc2(nn.relu(fc1(v)))
    x = x.astype(self.dtype)
    a = nn.sigmoid(mlp(jnp.mean(x, axis=(1, 2))) + mlp(jnp.max(x, axis=(1, 2))))   # [N, C]
    return x * a[:, None, None, :], a.astype(jnp.float32)


class SpatialAttention(nn.Module):
  """3-layer conv attention over [mean_c, max_c]. x [N,h,w,C] -> (x * a, a f32 [N, h, w]).

  Params: ``conv0`` [k,k,2,hidden], ``bn0``, ``conv1`` [3,3,hidden,hidden], ``bn1``,
  ``conv2`` [1,1,hidden,1] + bias; 'SAME' (zero) padding, stride 1.
  """
  hidden: int = 16
  kernel: int = 7
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    bn = lambda name: nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                                   epsilon=self.bn_epsilon, **kw, name=name)
    x = x.astype(self.dtype)
    s = jnp.concatenate([jnp.mean(x, -1, keepdims=True), jnp.max(x, -1, keepdims=True)], -1)
    k = self.kernel
    s = nn.relu(bn('bn0')(nn.Conv(self.hidden, (k, k), padding='SAME', use_bias=False, **kw,
                                  name='conv0')(s)))
    s = nn.relu(bn('bn1')(nn.Conv(self.hidden, (3, 3), padding='SAME', use_bias=False, **kw,
                                  name='conv1')(s)))
    a = nn.sigmoid(nn.Conv(1, (1, 1), **kw, name='conv2')(s))[..., 0]             # [N, h, w]
    return x * a[..., None], a.astype(jnp.float32)


class CBAM(nn.Module):
  """Channel then spatial attention. x [N,h,w,C] -> (y [N,h,w,C], {'channel': f32 [N, C],
  'spatial': f32 [N, h, w]}). Submodules ``channel``, ``spatial``."""
  reduction: int = 16
  min_hidden: int = 8
  spatial_hidden: int = 16
  spatial_kernel: int = 7
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x, a_c = ChannelAttention(self.reduction, self.min_hidden, **kw, name='channel')(x)
    x, a_s = SpatialAttention(self.spatial_hidden, self.spatial_kernel, self.bn_momentum,
                              self.bn_epsilon, **kw, name='spatial')(x, train=train)
    return x, {'channel': a_c, 'spatial': a_s}
