"""EfficientNet trunk + depthwise conv tests (tiny inputs, CPU-friendly)."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vad_jax.models.conv import Conv, conv2d
from vad_jax.models.depthwise import DepthwiseConv, conv_padding, depthwise_conv, pad_amounts
from vad_jax.models.efficientnet import (
    EfficientNet, count_params, feature_dim, preprocess, round_filters, round_repeats,
    trainable_mask)


@pytest.mark.parametrize("k,s,mode,hw", [(3, 1, "same", 9), (3, 2, "same", 8), (5, 2, "same", 9),
                                         (5, 2, "symmetric", 8), (3, 2, "symmetric", 7)])
def test_depthwise_impls_agree(k, s, mode, hw):
    kx, kk, kg = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, (2, hw, hw + 1, 6))
    w = jax.random.normal(kk, (k, k, 1, 6))
    pad = conv_padding(x.shape, k, s, mode)
    outs, grads = {}, {}
    for impl in ("xla", "shifted"):
        @jax.jit
        def fwd_bwd(x, w):
            f = lambda x, w: depthwise_conv(x, w, s, pad, impl)
            y, vjp = jax.vjp(f, x, w)
            return y, vjp(jax.random.normal(kg, y.shape))
        outs[impl], grads[impl] = fwd_bwd(x, w)
    np.testing.assert_allclose(outs["xla"], outs["shifted"], atol=1e-5)
    for a, b in zip(grads["xla"], grads["shifted"]):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert outs["xla"].shape == (2, -(-hw // s), -(-(hw + 1) // s), 6)


@pytest.mark.parametrize("k,s,mode,hw", [(1, 1, "same", 5), (1, 2, "same", 7), (3, 2, "same", 8),
                                         (3, 2, "symmetric", 9), (3, 1, "symmetric", 6)])
def test_conv_impls_agree(k, s, mode, hw):
    """The matmul path (1x1 as a dot, kxk as im2col + dot) == lax.conv_general_dilated,
    forward and both gradients; the module's params are nn.Conv's (same names, shapes, values)."""
    kx, kk, kg = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, (2, hw, hw + 1, 5))
    w = jax.random.normal(kk, (k, k, 5, 7))
    pad = conv_padding(x.shape, k, s, mode)
    outs, grads = {}, {}
    for impl in ("xla", "dot"):
        @jax.jit
        def fwd_bwd(x, w):
            y, vjp = jax.vjp(lambda x, w: conv2d(x, w, s, pad, impl), x, w)
            return y, vjp(jax.random.normal(kg, y.shape))
        outs[impl], grads[impl] = fwd_bwd(x, w)
    want = jax.lax.conv_general_dilated(x, w, (s, s), pad, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(outs["xla"], want, atol=1e-5)
    np.testing.assert_allclose(outs["dot"], outs["xla"], atol=1e-4)
    for a, b in zip(grads["dot"], grads["xla"]):
        np.testing.assert_allclose(a, b, atol=1e-4)
    assert outs["dot"].shape == (2, -(-hw // s), -(-(hw + 1) // s), 7)
    ref = nn.Conv(7, (k, k), (s, s), padding=pad, use_bias=True)
    ours = Conv(7, k, s, pad, use_bias=True, impl="dot")
    v_ref, v = ref.init(jax.random.PRNGKey(3), x), ours.init(jax.random.PRNGKey(3), x)
    chex.assert_trees_all_equal(v, v_ref)
    v = jax.tree.map(lambda a: a + 0.1, v)
    np.testing.assert_allclose(ours.apply(v, x), ref.apply(v, x), atol=1e-4)


def test_padding_rules():
    # TF SAME == Keras correct_pad + valid for stride 2 (even input: less on top/left)
    assert pad_amounts(224, 3, 2, "same") == (0, 1)
    assert pad_amounts(112, 5, 2, "same") == (1, 2)
    assert pad_amounts(7, 3, 2, "same") == (1, 1)
    assert pad_amounts(14, 5, 1, "same") == (2, 2)
    assert pad_amounts(224, 5, 2, "symmetric") == (2, 2)


def test_depthwise_module_kernel_layout():
    m = DepthwiseConv(8, 5, 2, "same", "shifted")
    v = m.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 8)))
    assert v["params"]["kernel"].shape == (5, 5, 1, 8)
    assert jax.jit(m.apply)(v, jnp.ones((1, 8, 8, 8))).shape == (1, 4, 4, 8)


def test_b0_param_count_and_structure():
    m = EfficientNet()
    v = jax.eval_shape(lambda: m.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False))
    assert count_params(v["params"]) == 4_007_548
    assert set(v["params"]) == {"stem", "head"} | {f"stage{i}" for i in range(7)}
    assert [len(v["params"][f"stage{i}"]) for i in range(7)] == [1, 2, 2, 3, 3, 4, 1]
    assert set(v["batch_stats"]["stem"]["bn"]) == {"mean", "var"}
    assert v["params"]["stage1"]["block0"]["se_reduce"]["kernel"].shape == (1, 1, 96, 4)
    assert feature_dim(1.0) == 1280 and feature_dim(1.4) == 1792


def test_compound_scaling_matches_keras():
    assert [round_filters(f, 1.1) for f in (32, 16, 24, 1280)] == [32, 16, 24, 1408]
    assert [round_repeats(r, 1.8) for r in (1, 2, 3, 4)] == [2, 4, 6, 8]
    m = EfficientNet(width_mult=1.1, depth_mult=1.2)  # B2
    v = jax.eval_shape(lambda: m.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False))
    assert count_params(v) == 7_700_994  # Keras EfficientNetB2(include_top=False) trainable


def test_preprocess():
    x = jnp.full((1, 2, 2, 3), 255, jnp.uint8)
    y = preprocess(x)
    np.testing.assert_allclose(y[0, 0, 0], (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]), rtol=1e-6)
    assert preprocess(x, jnp.bfloat16).dtype == jnp.bfloat16


def test_tiny_train_step_frozen_stages():
    m = EfficientNet(width_mult=0.25, depth_mult=0.1, frozen_stages=2, drop_connect_rate=0.5,
                     depthwise_impl="shifted")
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
    v = jax.jit(lambda x: m.init(jax.random.PRNGKey(0), x, train=False))(x)

    @jax.jit
    def step(params, stats, x, rng):
        def loss(p):
            y, upd = m.apply({"params": p, "batch_stats": stats}, x, train=True,
                             rngs={"dropout": rng}, mutable=["batch_stats"])
            return jnp.sum(y ** 2), (y, upd)
        (l, (y, upd)), g = jax.value_and_grad(loss, has_aux=True)(params)
        return y, upd["batch_stats"], g

    y, stats, g = step(v["params"], v["batch_stats"], x, jax.random.PRNGKey(2))
    assert y.shape == (2, feature_dim(0.25)) and bool(jnp.all(jnp.isfinite(y)))
    norm = lambda t: float(sum(jnp.sum(jnp.abs(a)) for a in jax.tree_util.tree_leaves(t)))
    for frozen in ("stem", "stage0", "stage1"):
        assert norm(g[frozen]) == 0.0
        np.testing.assert_array_equal(stats[frozen]["bn"]["mean"] if frozen == "stem" else
                                      stats[frozen]["block0"]["bn"]["mean"],
                                      v["batch_stats"][frozen]["bn"]["mean"] if frozen == "stem" else
                                      v["batch_stats"][frozen]["block0"]["bn"]["mean"])
    assert norm(g["stage2"]) > 0 and norm(g["head"]) > 0
    assert not np.allclose(stats["stage2"]["block0"]["bn"]["mean"],
                           v["batch_stats"]["stage2"]["block0"]["bn"]["mean"])
    mask = trainable_mask(v["params"], 2)
    assert not any(jax.tree_util.tree_leaves(mask["stage1"])) and all(jax.tree_util.tree_leaves(mask["stage2"]))
    # eval is deterministic and matches across depthwise impls
    y1 = jax.jit(lambda v, x: m.apply(v, x, train=False))(v, x)
    y2 = jax.jit(lambda v, x: m.clone(depthwise_impl="xla").apply(v, x, train=False))(v, x)
    np.testing.assert_allclose(y1, y2, atol=1e-4)


def test_cpu_fast_paths_equal_xla_reference_train_step():
    """The whole trunk in train mode: convs as dots + shifted depthwise (CPU's 'auto') against
    XLA's convolutions: loss, every parameter gradient and the updated BatchNorm statistics.
    In float64, so rounding (which BatchNorm over a 3-frame batch amplifies to ~3e-4 of the
    largest gradient in float32) does not hide a wrong term."""
    with jax.enable_x64(True):
        f64 = dict(dtype=jnp.float64, param_dtype=jnp.float64)
        ref = EfficientNet(width_mult=0.25, depth_mult=0.1, drop_connect_rate=0.0,
                           conv_impl="xla", depthwise_impl="xla", **f64)
        fast = ref.clone(conv_impl="dot", depthwise_impl="shifted")
        x = jax.random.normal(jax.random.PRNGKey(1), (3, 32, 32, 3), jnp.float64)
        v = jax.jit(lambda x: ref.init(jax.random.PRNGKey(0), x, train=False))(x)
        chex.assert_trees_all_equal_shapes_and_dtypes(
            v, jax.eval_shape(lambda x: fast.init(jax.random.PRNGKey(0), x, train=False), x))

        def grads(model):
            def loss(p):
                y, upd = model.apply({"params": p, "batch_stats": v["batch_stats"]}, x,
                                     train=True, mutable=["batch_stats"])
                return jnp.mean(jnp.sin(y)), upd["batch_stats"]
            return jax.jit(jax.value_and_grad(loss, has_aux=True))(v["params"])

        (l_ref, s_ref), g_ref = grads(ref)
        (l_fast, s_fast), g_fast = grads(fast)
        np.testing.assert_allclose(l_fast, l_ref, rtol=1e-12)
        scale = max(float(jnp.max(jnp.abs(a))) for a in jax.tree_util.tree_leaves(g_ref))
        chex.assert_trees_all_close(g_fast, g_ref, atol=1e-10 * scale, rtol=0)
        chex.assert_trees_all_close(s_fast, s_ref, atol=1e-10, rtol=1e-10)
