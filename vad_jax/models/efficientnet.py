"""EfficientNet trunk (B0..B7 via compound scaling), Flax Linen, NHWC.

Matches ``keras.applications.EfficientNetB*`` (include_top=False,
pooling='avg') layer for layer, so ImageNet weights load 1:1 through
``vad_jax.convert.keras.efficientnet_from_keras`` (use ``padding='same'``).
Preprocessing is not part of the trunk: see :func:`preprocess`.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn

from vad_jax.models.conv import Conv
from vad_jax.models.depthwise import DepthwiseConv, conv_padding

__all__ = [
    "BLOCKS_B0", "VARIANTS", "IMAGENET_MEAN", "IMAGENET_STD", "EfficientNet", "MBConvBlock",
    "preprocess", "round_filters", "round_repeats", "feature_dim", "count_params",
    "trainable_mask", "efficientnet_variant",
]

# (expand, kernel, stride, in, out, repeats) for B0.
BLOCKS_B0 = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
# name -> (width_mult, depth_mult, default resolution), as in Keras.
VARIANTS = {
    "b0": (1.0, 1.0, 224), "b1": (1.0, 1.1, 240), "b2": (1.1, 1.2, 260),
    "b3": (1.2, 1.4, 300), "b4": (1.4, 1.8, 380), "b5": (1.6, 2.2, 456),
    "b6": (1.8, 2.6, 528), "b7": (2.0, 3.1, 600),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SE_RATIO = 0.25

# Keras CONV_KERNEL_INITIALIZER: VarianceScaling(2.0, fan_out, normal).
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
_dw_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")  # [k,k,1,C]: fan_in = k*k


def round_filters(filters: int, width_mult: float, divisor: int = 8) -> int:
    """Scale channel count by ``width_mult``, round to ``divisor``, keep >= 90%."""
    filters = filters * width_mult
    new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if new < 0.9 * filters:
        new += divisor
    return int(new)


def round_repeats(repeats: int, depth_mult: float) -> int:
    """ceil(depth_mult * repeats)."""
    return int(math.ceil(depth_mult * repeats))


def feature_dim(width_mult: float = 1.0) -> int:
    """Channels of the pooled trunk output (1280 for B0)."""
    return round_filters(1280, width_mult)


def efficientnet_variant(name: str, **kwargs) -> "EfficientNet":
    """EfficientNet('b0'..'b7') with Keras' width/depth multipliers."""
    w, d, _ = VARIANTS[name.lower()]
    return EfficientNet(width_mult=w, depth_mult=d, **kwargs)


def preprocess(frames_uint8: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
    """uint8 RGB [..., 3] in [0, 255] -> ImageNet-normalised float ``dtype``.

    (x/255 - mean) / std, which is exactly what Keras' EfficientNet does in its
    Rescaling + Normalization(+Rescaling) layers with ImageNet weights.
    """
    x = jnp.asarray(frames_uint8).astype(jnp.float32) / 255.0
    x = (x - jnp.asarray(IMAGENET_MEAN, jnp.float32)) / jnp.asarray(IMAGENET_STD, jnp.float32)
    return x.astype(dtype)


def count_params(params) -> int:
    """Number of scalars in a params tree (pass ``variables['params']``; BN running stats live
    in ``batch_stats`` and are therefore excluded)."""
    if isinstance(params, dict) and "params" in params:
        params = params["params"]
    return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))


def trainable_mask(params, frozen_stages: int):
    """Bool pytree (same structure as ``params``): False for the stem and stage0..N-1.

    Use with ``optax.masked`` so frozen parameters get no weight decay / updates.
    """
    frozen = frozen_names(frozen_stages)
    return {k: jax.tree_util.tree_map(lambda _: k not in frozen, v) for k, v in params.items()}


def frozen_names(frozen_stages: int) -> set[str]:
    """Top-level trunk modules frozen by `frozen_stages`: the stem and stage0..N-1."""
    if frozen_stages <= 0:
        return set()
    return {"stem"} | {f"stage{i}" for i in range(frozen_stages)}


class _ConvBN(nn.Module):
    """Conv (no bias) + BatchNorm (+ SiLU). [N,H,W,Cin] -> [N,H/s,W/s,features].

    Params: ``conv/kernel`` [k,k,Cin,F], ``bn/{scale,bias}``; stats ``bn/{mean,var}``.
    """

    features: int
    kernel_size: int = 1
    strides: int = 1
    padding: str = "same"
    act: bool = True
    conv_impl: str = "auto"
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, use_running_average: bool):
        k = self.kernel_size
        x = Conv(self.features, k, self.strides, conv_padding(x.shape, k, self.strides, self.padding),
                 impl=self.conv_impl, kernel_init=_conv_init, dtype=self.dtype,
                 param_dtype=self.param_dtype, name="conv")(x)
        x = nn.BatchNorm(use_running_average=use_running_average, momentum=self.bn_momentum,
                         epsilon=self.bn_epsilon, dtype=self.dtype, param_dtype=self.param_dtype,
                         name="bn")(x)
        return nn.silu(x) if self.act else x


class MBConvBlock(nn.Module):
    """Inverted-residual block with squeeze-excitation. [N,H,W,in] -> [N,H/s,W/s,out].

    expand 1x1 (if expand != 1) -> depthwise kxk stride s -> SE (ratio 0.25 of the
    block input channels) -> project 1x1; residual + stochastic depth when s == 1
    and in == out. Submodule names mirror Keras (expand_conv/expand_bn, dwconv/bn,
    se_reduce/se_expand, project_conv/project_bn).
    """

    expand: int
    kernel_size: int
    strides: int
    in_features: int
    out_features: int
    drop_rate: float = 0.0
    padding: str = "same"
    depthwise_impl: str = "auto"
    conv_impl: str = "auto"
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool, use_running_average: bool):
        bn = lambda name: nn.BatchNorm(use_running_average=use_running_average,
                                       momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                                       dtype=self.dtype, param_dtype=self.param_dtype, name=name)
        conv1x1 = lambda f, name, bias=False: Conv(
            f, 1, use_bias=bias, impl=self.conv_impl, kernel_init=_conv_init, dtype=self.dtype,
            param_dtype=self.param_dtype, name=name)
        inputs = x
        filters = self.in_features * self.expand
        if self.expand != 1:
            x = nn.silu(bn("expand_bn")(conv1x1(filters, "expand_conv")(x)))
        x = DepthwiseConv(filters, self.kernel_size, self.strides, self.padding, self.depthwise_impl,
                          kernel_init=_dw_init, dtype=self.dtype, param_dtype=self.param_dtype,
                          name="dwconv")(x)
        x = nn.silu(bn("bn")(x))
        # squeeze-excitation
        se_f = max(1, int(self.in_features * SE_RATIO))
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        s = nn.silu(conv1x1(se_f, "se_reduce", bias=True)(s))
        s = nn.sigmoid(conv1x1(filters, "se_expand", bias=True)(s))
        x = x * s
        x = bn("project_bn")(conv1x1(self.out_features, "project_conv")(x))
        if self.strides == 1 and self.in_features == self.out_features:
            if self.drop_rate > 0:
                # stochastic depth: per-sample Bernoulli, rescaled by 1/keep
                x = nn.Dropout(self.drop_rate, broadcast_dims=(1, 2, 3),
                               deterministic=not train, name="drop")(x)
            x = x + inputs
        return x


class EfficientNet(nn.Module):
    """EfficientNet trunk without classifier. x [N,H,W,3] (normalised) -> [N, feature_dim].

    ``pool=False`` returns the head's feature map [N, h, w, feature_dim] instead of its
    global mean (h = ceil(H/32)); parameters do not depend on ``pool``.
    Params: ``stem``, ``stage0``..``stage6`` (each ``block0``..), ``head``.
    ``padding``: 'same' (TF/Keras, needed for Keras weights) or 'symmetric' (timm).
    ``frozen_stages=N`` freezes the stem plus block stages 0..N-1 (N=2 -> stem,
    stage0, stage1): they run BatchNorm on running averages even when training
    and their output goes through ``stop_gradient``. ``train=True`` needs the
    'dropout' rng when ``drop_connect_rate > 0`` and mutable 'batch_stats'.
    """

    width_mult: float = 1.0
    depth_mult: float = 1.0
    padding: str = "symmetric"
    depthwise_impl: str = "auto"
    conv_impl: str = "auto"
    drop_connect_rate: float = 0.2
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    frozen_stages: int = 0
    pool: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = x.astype(self.dtype)
        common = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
                      dtype=self.dtype, param_dtype=self.param_dtype)
        frozen = frozen_names(self.frozen_stages)
        rf = lambda f: round_filters(f, self.width_mult)

        def run_bn(name):  # frozen parts always use running averages
            return (not train) or name in frozen

        x = _ConvBN(rf(32), 3, 2, self.padding, conv_impl=self.conv_impl, name="stem", **common)(
            x, use_running_average=run_bn("stem"))
        if "stem" in frozen:
            x = jax.lax.stop_gradient(x)

        total = float(sum(round_repeats(b[5], self.depth_mult) for b in BLOCKS_B0))
        b = 0
        for i, (e, k, s, fin, fout, r) in enumerate(BLOCKS_B0):
            name = f"stage{i}"
            stage = _Stage(
                [(e, k, s if j == 0 else 1, rf(fin) if j == 0 else rf(fout), rf(fout),
                  self.drop_connect_rate * (b + j) / total)
                 for j in range(round_repeats(r, self.depth_mult))],
                padding=self.padding, depthwise_impl=self.depthwise_impl, conv_impl=self.conv_impl,
                name=name, **common)
            b += round_repeats(r, self.depth_mult)
            frz = name in frozen
            x = stage(x, train=train and not frz, use_running_average=run_bn(name))
            if frz:
                x = jax.lax.stop_gradient(x)

        x = _ConvBN(rf(1280), 1, 1, self.padding, conv_impl=self.conv_impl, name="head", **common)(
            x, use_running_average=not train)
        return jnp.mean(x, axis=(1, 2)) if self.pool else x


class _Stage(nn.Module):
    """A run of MBConv blocks ``block0``.. ; ``blocks`` = [(expand, k, stride, in, out, drop)]."""

    blocks: Any
    padding: str = "same"
    depthwise_impl: str = "auto"
    conv_impl: str = "auto"
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool, use_running_average: bool):
        for j, (e, k, s, fin, fout, drop) in enumerate(self.blocks):
            x = MBConvBlock(e, k, s, fin, fout, drop, self.padding, self.depthwise_impl,
                            self.conv_impl, self.bn_momentum, self.bn_epsilon, self.dtype,
                            self.param_dtype, name=f"block{j}")(x, train=train, use_running_average=use_running_average)
        return x
