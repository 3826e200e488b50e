"""Keras (JAX backend) -> vad_jax parity: EfficientNetB0 trunk and stacked BiLSTM.

EfficientNet: Keras' input layers (Rescaling 1/255 + Normalization) are given
ImageNet mean / std**2, so Keras sees raw 0..255 frames and our trunk sees
``preprocess(frames)``: the comparison covers preprocessing too. Weights go
through a Keras 3 ``.weights.h5`` file (the converter's file path).
"""

import os

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")

from vad_jax.convert.keras import bilstm_from_keras, efficientnet_from_keras, read_keras_weights  # noqa: E402
from vad_jax.models.efficientnet import IMAGENET_MEAN, IMAGENET_STD, EfficientNet, preprocess  # noqa: E402
from vad_jax.models.recurrent import BiLSTM  # noqa: E402


@pytest.fixture(scope="module")
def keras_b0(fast_keras_init):
    m = keras.applications.EfficientNetB0(weights=None, include_top=False, pooling="avg",
                                          input_shape=(224, 224, 3))
    rng = np.random.default_rng(0)
    for layer in m.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, mu, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, mu.shape), rng.uniform(0.5, 1.5, var.shape)])
        elif isinstance(layer, keras.layers.Normalization):
            layer.set_weights([np.array(IMAGENET_MEAN), np.array(IMAGENET_STD) ** 2, np.array(1)])
            layer.finalize_state()  # Normalization reads mean/variance from here, not the variables
    return m


def test_efficientnet_b0_parity(keras_b0, tmp_path):
    path = str(tmp_path / "b0.weights.h5")
    keras_b0.save_weights(path)
    variables = efficientnet_from_keras(path)
    frames = np.random.default_rng(1).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    ref = np.asarray(keras_b0(frames.astype(np.float32), training=False))
    model = EfficientNet(padding="same")
    ours = jax.jit(lambda v, f: model.apply(v, preprocess(f), train=False))(variables, frames)
    err = float(np.max(np.abs(np.asarray(ours) - ref)))
    print(f"EfficientNetB0 parity: max abs err {err:.2e}, ref max abs {np.abs(ref).max():.3f}")
    assert ref.shape == ours.shape == (2, 1280)
    assert np.abs(ref).max() > 0.1  # non-trivial activations
    assert err < 1e-4


def test_efficientnet_conversion_errors(keras_b0):
    weights, _ = read_keras_weights(keras_b0)
    bad = dict(weights)
    bad["block2a_dwconv"] = [np.zeros((5, 5, 96, 1), np.float32)]
    with pytest.raises(ValueError, match="block2a_dwconv"):
        efficientnet_from_keras(bad)
    missing = {k: v for k, v in weights.items() if k != "block3b_se_reduce"}
    with pytest.raises(ValueError, match="block3b_se_reduce"):
        efficientnet_from_keras(missing, width_mult=1.0, depth_mult=1.0)
    extra = dict(weights, block1z_mystery=[np.zeros(3)])
    with pytest.raises(ValueError, match="block1z_mystery"):
        efficientnet_from_keras(extra, width_mult=1.0, depth_mult=1.0)
    with pytest.raises(ValueError):
        efficientnet_from_keras(weights, width_mult=1.1, depth_mult=1.0)


def test_bilstm_parity(fast_keras_init):
    H, T, F, B = 16, 7, 12, 3
    layers = [keras.layers.Bidirectional(keras.layers.LSTM(H, return_sequences=True)) for _ in range(2)]
    inp = keras.Input((T, F))
    out = layers[1](layers[0](inp))
    kmodel = keras.Model(inp, out)
    rng = np.random.default_rng(2)
    for layer in layers:  # random biases too (Keras initialises them to 0/1)
        layer.set_weights([rng.normal(0, 0.3, w.shape) for w in layer.get_weights()])
    x = rng.normal(size=(B, T, F)).astype(np.float32)
    ref = np.asarray(kmodel(x, training=False))
    mu, var = ref.mean(-1, keepdims=True), ref.var(-1, keepdims=True)
    ref_ln = (ref - mu) / np.sqrt(var + 1e-6)  # our LayerNorm with identity affine

    params = bilstm_from_keras(layers)
    ours = jax.jit(lambda p, x: BiLSTM(hidden=H, num_layers=2).apply({"params": p}, x, train=False))(params, x)
    err = float(np.max(np.abs(np.asarray(ours) - ref_ln)))
    print(f"BiLSTM parity: max abs err {err:.2e}")
    assert ours.shape == (B, T, 2 * H)
    assert err < 1e-4

    with pytest.raises(ValueError, match="layer 1"):
        fw, bw = layers[1].forward_layer.get_weights(), layers[1].backward_layer.get_weights()
        bilstm_from_keras([layers[0], (fw, [w[:-1] for w in bw])])


def test_config_trunk_weights_loading(keras_b0, tmp_path):
    """config.model.trunk.weights: the hybrid's `prepare` puts the converted Keras trunk into a
    fresh run's variables (the rest untouched); bad files and configs are clear errors."""
    from configs import hybrid as hybrid_config
    from vad_jax.classes import CLASS_NAMES
    from vad_jax.data.source import DataInfo
    from vad_jax.systems.hybrid import HybridSystem
    from vad_jax.train import loop

    path = str(tmp_path / "b0.weights.h5")
    keras_b0.save_weights(path)
    shapes = jax.eval_shape(lambda: EfficientNet(padding="same").init(
        jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32), train=False))
    zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    variables = {"params": {"trunk": zeros["params"], "bilstm": {"w": np.ones(3)}},
                 "batch_stats": {"trunk": zeros["batch_stats"]}}
    config = hybrid_config.get_config()
    config.model.trunk.weights = path
    config.model.trunk.padding = "same"
    info = DataInfo(CLASS_NAMES, np.ones(14), {"video": jax.ShapeDtypeStruct((68, 32, 32, 3), np.uint8)})
    new = HybridSystem.from_config(config, info).prepare(variables, None)
    want = efficientnet_from_keras(path)
    for a, b in zip(jax.tree.leaves(new["params"]["trunk"]), jax.tree.leaves(want["params"])):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(new["batch_stats"]["trunk"]),
                    jax.tree.leaves(want["batch_stats"])):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(new["params"]["bilstm"]["w"], np.ones(3))  # the rest untouched

    config.model.trunk.padding = "symmetric"
    with pytest.raises(ValueError, match="padding='same'"):
        loop.check_config(config)
    config.model.trunk.padding = "same"
    config.model.trunk.width_mult = 0.5
    with pytest.raises(ValueError, match="shape mismatch|do not match"):
        HybridSystem.from_config(config, info).prepare(variables, None)
    config.model.trunk.width_mult = 1.0
    config.model.trunk.weights = str(tmp_path / "missing.h5")
    with pytest.raises(FileNotFoundError):
        HybridSystem.from_config(config, info).prepare(variables, None)
