"""Keras -> vad_jax weight conversion (no network, no TensorFlow).

* :func:`efficientnet_from_keras` maps ``keras.applications.EfficientNetB*``
  weights (a Keras model, a Keras 3 ``.weights.h5`` file, a legacy Keras ``.h5``
  file such as ``efficientnetb0_notop.h5``, or a ``{layer_name: [arrays]}``
  mapping) onto :class:`vad_jax.models.efficientnet.EfficientNet` (use
  ``padding='same'``). Keras' Rescaling/Normalization input layers and a top
  classifier (``predictions``) are ignored: feed the trunk ``preprocess(frames)``.
* :func:`bilstm_from_keras` maps a stack of ``Bidirectional(LSTM(h,
  return_sequences=True))`` layers onto :class:`vad_jax.models.recurrent.BiLSTM`.
* :func:`violence_from_keras` maps seed 003's Keras violence model (Dense, BatchNorm,
  BiLSTMs, attention) onto :class:`vad_jax.models.violence.ViolenceDetector`.

Missing, unexpected or shape-mismatched weights raise ``ValueError`` naming the
Keras layer.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["efficientnet_from_keras", "bilstm_from_keras", "violence_from_keras", "read_keras_weights",
           "keras_efficientnet_layer_names"]

_BN_KEYS = ("scale", "bias", "mean", "var")  # Keras gamma, beta, moving_mean, moving_variance
_IGNORED = re.compile(r"^(normalization|rescaling|predictions|dense|input_layer)(_\d+)?$")


# ----------------------------------------------------------------------------- reading
def read_keras_weights(model_or_weights) -> tuple[dict[str, list[np.ndarray]], bool]:
    """-> ({name: [arrays in Keras weight order]}, named).

    ``named`` is False for Keras 3 ``.weights.h5`` files, whose layer groups are
    keyed by class name + counter (``conv2d_3``) rather than by layer name.
    """
    if isinstance(model_or_weights, (str, os.PathLike)):
        return _read_h5(os.fspath(model_or_weights))
    if isinstance(model_or_weights, Mapping):
        return {k: [np.asarray(a) for a in v] for k, v in model_or_weights.items()}, True
    if hasattr(model_or_weights, "layers"):
        out = {}
        for layer in model_or_weights.layers:
            w = layer.get_weights()
            if w:
                out[layer.name] = [np.asarray(a) for a in w]
        return out, True
    raise TypeError(f"expected a keras Model, an .h5 path or a mapping, got {type(model_or_weights)}")


def _read_h5(path: str):
    import h5py

    def as_str(s):
        return s.decode("utf8") if isinstance(s, bytes) else str(s)

    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" in root.attrs:  # legacy Keras 2 / keras.src.legacy h5 layout
            out = {}
            for lname in (as_str(n) for n in root.attrs["layer_names"]):
                g = root[lname]
                names = [as_str(n) for n in g.attrs.get("weight_names", [])]
                if names:
                    out[lname] = [np.asarray(g[n]) for n in names]
            return out, True
        if "layers" in f:  # Keras 3 .weights.h5: layers/<auto_name>/vars/<i>
            out = {}
            for lname, g in f["layers"].items():
                if "vars" in g and len(g["vars"]):
                    v = g["vars"]
                    out[lname] = [np.asarray(v[str(i)]) for i in range(len(v))]
            return out, False
    raise ValueError(f"{path}: not a Keras weights file (no 'layer_names' attribute or 'layers' group)")


# ----------------------------------------------------------------------------- EfficientNet
def keras_efficientnet_layer_names(width_mult: float = 1.0, depth_mult: float = 1.0):
    """Weighted layers of keras.applications.EfficientNet in model.layers order.

    -> [(keras_layer_name, keras_class_snake_name, our_path)], our_path like
    ('stage1', 'block0', 'dwconv') or ('stem', 'bn').
    """
    from vad_jax.models.efficientnet import BLOCKS_B0, round_repeats

    seq = [("stem_conv", "conv2d", ("stem", "conv")), ("stem_bn", "batch_normalization", ("stem", "bn"))]
    for i, (e, _k, _s, _fin, _fout, r) in enumerate(BLOCKS_B0):
        for j in range(round_repeats(r, depth_mult)):
            kn, ours = f"block{i + 1}{chr(97 + j)}_", (f"stage{i}", f"block{j}")
            if e != 1:
                seq += [(kn + "expand_conv", "conv2d", ours + ("expand_conv",)),
                        (kn + "expand_bn", "batch_normalization", ours + ("expand_bn",))]
            seq += [(kn + "dwconv", "depthwise_conv2d", ours + ("dwconv",)),
                    (kn + "bn", "batch_normalization", ours + ("bn",)),
                    (kn + "se_reduce", "conv2d", ours + ("se_reduce",)),
                    (kn + "se_expand", "conv2d", ours + ("se_expand",)),
                    (kn + "project_conv", "conv2d", ours + ("project_conv",)),
                    (kn + "project_bn", "batch_normalization", ours + ("project_bn",))]
    seq += [("top_conv", "conv2d", ("head", "conv")), ("top_bn", "batch_normalization", ("head", "bn"))]
    return seq


def _auto_names(seq):
    """Keras 3 saving names: snake class name + per-class counter, in model.layers order."""
    counts, out = {}, {}
    for kname, cls, _ in seq:
        n = counts.get(cls, 0)
        counts[cls] = n + 1
        out[f"{cls}_{n}" if n else cls] = kname
    return out


def _template(width_mult, depth_mult):
    import jax
    import jax.numpy as jnp
    from flax.traverse_util import flatten_dict
    from vad_jax.models.efficientnet import EfficientNet

    model = EfficientNet(width_mult=width_mult, depth_mult=depth_mult, padding="same")
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)),
                                               train=False))
    return {k: tuple(v.shape) for k, v in flatten_dict(jax.tree_util.tree_map(lambda a: a, dict(shapes))).items()}


def _convert(weights: dict, seq, width_mult, depth_mult) -> dict:
    from flax.traverse_util import unflatten_dict

    tmpl = _template(width_mult, depth_mult)
    by_name = {k: p for k, _, p in seq}
    flat = {}
    for kname, arrays in weights.items():
        if kname not in by_name:
            if _IGNORED.match(kname):
                continue
            raise ValueError(f"unexpected Keras layer {kname!r} (not part of EfficientNet("
                             f"width_mult={width_mult}, depth_mult={depth_mult}))")
        path = by_name[kname]
        if path[-1] in ("bn", "expand_bn", "project_bn"):
            if len(arrays) != 4:
                raise ValueError(f"Keras layer {kname!r}: expected 4 BatchNorm arrays "
                                 f"(gamma, beta, moving_mean, moving_variance), got {len(arrays)}")
            for key, a in zip(_BN_KEYS, arrays):
                coll = "params" if key in ("scale", "bias") else "batch_stats"
                flat[(coll,) + path + (key,)] = (kname, a)
        else:
            if path[-1].startswith("se_"):
                names = ("kernel", "bias")
            else:
                names = ("kernel",)
            if len(arrays) != len(names):
                raise ValueError(f"Keras layer {kname!r}: expected {len(names)} arrays "
                                 f"({', '.join(names)}), got {len(arrays)}")
            arrays = list(arrays)
            if path[-1] == "dwconv":  # Keras [k,k,C,1] -> ours [k,k,1,C]
                arrays[0] = np.swapaxes(arrays[0], 2, 3) if arrays[0].ndim == 4 else arrays[0]
            for key, a in zip(names, arrays):
                flat[("params",) + path + (key,)] = (kname, a)
    inv = {p: k for k, _, p in seq}
    for key, shape in tmpl.items():
        if key not in flat:
            raise ValueError(f"missing weights for Keras layer {inv.get(key[1:-1], key)!r} "
                             f"({'/'.join(key)})")
        kname, a = flat[key]
        if tuple(a.shape) != shape:
            raise ValueError(f"shape mismatch for Keras layer {kname!r} ({'/'.join(key)}): "
                             f"got {tuple(a.shape)}, expected {shape}")
    for key, (kname, _) in flat.items():
        if key not in tmpl:
            raise ValueError(f"unexpected weight {'/'.join(key)} from Keras layer {kname!r}")
    return unflatten_dict({k: np.asarray(a, np.float32) for k, (_, a) in flat.items()})


def efficientnet_from_keras(model_or_weights, *, width_mult: float | None = None,
                            depth_mult: float | None = None) -> dict[str, Any]:
    """Keras EfficientNetB* weights -> ``{'params': ..., 'batch_stats': ...}`` (float32 numpy).

    ``model_or_weights``: keras Model, path to a Keras 3 ``.weights.h5`` or a legacy
    ``.h5`` file, or ``{keras_layer_name: [arrays]}``. ``width_mult``/``depth_mult``
    default to the B0..B7 variant matching the weights' stem width and block count.
    Use the result with ``EfficientNet(width_mult, depth_mult, padding='same')`` and
    ``preprocess`` (ImageNet mean/std) in place of Keras' input layers.
    """
    from vad_jax.models.efficientnet import VARIANTS, round_filters

    weights, named = read_keras_weights(model_or_weights)
    if width_mult is not None or depth_mult is not None:
        cands = [(width_mult or 1.0, depth_mult or 1.0)]
    else:
        cands = list(dict.fromkeys((w, d) for w, d, _ in VARIANTS.values()))
        if named:
            n_blocks = sum(1 for k in weights if k.endswith("_dwconv"))
            stem = weights.get("stem_conv", [np.zeros((0,))])[0]
        else:
            n_blocks = sum(1 for k in weights if re.fullmatch(r"depthwise_conv2d(_\d+)?", k))
            stem = weights.get("conv2d", [np.zeros((0,))])[0]
        stem_c = stem.shape[-1] if stem.ndim == 4 else -1
        cands = [(w, d) for w, d in cands
                 if round_filters(32, w) == stem_c
                 and sum(1 for _, c, _ in keras_efficientnet_layer_names(w, d)
                         if c == "depthwise_conv2d") == n_blocks]
        if not cands:
            raise ValueError(f"could not infer the EfficientNet variant (stem channels {stem_c}, "
                             f"{n_blocks} blocks); pass width_mult and depth_mult")
    first_err = None
    for w, d in cands:  # B1/B2 share stem width and depth: the full shape check decides
        try:
            return _convert_variant(weights, named, w, d)
        except ValueError as e:
            first_err = first_err or e
    raise first_err


def _convert_variant(weights, named, w, d):
    seq = keras_efficientnet_layer_names(w, d)
    if not named:
        auto = _auto_names(seq)
        renamed = {}
        for k, v in weights.items():
            if k in auto:
                renamed[auto[k]] = v
            elif not _IGNORED.match(k):
                raise ValueError(f"unexpected Keras layer {k!r} in weights file (not part of "
                                 f"EfficientNet(width_mult={w}, depth_mult={d}))")
        weights = renamed
    return _convert(weights, seq, w, d)


# ----------------------------------------------------------------------------- BiLSTM
def _lstm_arrays(layer, name):
    """Keras LSTM layer or [kernel, recurrent_kernel, bias] -> three arrays."""
    if hasattr(layer, "get_weights"):
        cfg = layer.get_config()
        for key, want in (("activation", "tanh"), ("recurrent_activation", "sigmoid"),
                          ("use_bias", True), ("return_sequences", True)):
            if key in cfg and cfg[key] != want:
                raise ValueError(f"{name}: Keras LSTM {key}={cfg[key]!r} not supported (need {want!r})")
        arrays = layer.get_weights()
    else:
        arrays = list(layer)
    if len(arrays) != 3:
        raise ValueError(f"{name}: expected LSTM weights [kernel, recurrent_kernel, bias], "
                         f"got {len(arrays)} arrays")
    return [np.asarray(a, np.float32) for a in arrays]


def bilstm_from_keras(bidirectional_layers: Sequence[Any]) -> dict[str, Any]:
    """Keras ``Bidirectional(LSTM(h, return_sequences=True))`` stack -> BiLSTM ``params``.

    Each item: a Keras Bidirectional layer (merge_mode='concat') or a pair
    ``(forward_weights, backward_weights)`` of ``[kernel [in,4h], recurrent_kernel
    [h,4h], bias [4h]]`` (Keras gate order i, f, c, o). Returns the params tree
    (``{'layer0': ..., 'norm': ...}``) for ``BiLSTM(hidden=h, num_layers=len(...))``;
    use it as ``{'params': params}``. Keras has no final LayerNorm: ``norm`` is set to
    scale=1, bias=0, so our output equals LayerNorm(eps=1e-6) of the Keras output.
    """
    params, hidden, fin = {}, None, None
    for i, layer in enumerate(bidirectional_layers):
        lname = getattr(layer, "name", f"bidirectional layer {i}")
        if hasattr(layer, "forward_layer"):
            if getattr(layer, "merge_mode", "concat") != "concat":
                raise ValueError(f"{lname}: merge_mode={layer.merge_mode!r} not supported (need 'concat')")
            pair = (layer.forward_layer, layer.backward_layer)
        else:
            pair = tuple(layer)
            if len(pair) != 2:
                raise ValueError(f"{lname}: expected (forward_weights, backward_weights)")
        out = {}
        for direction, sub in zip(("forward_rnn", "backward_rnn"), pair):
            name = f"{lname}/{direction}"
            k, rk, b = _lstm_arrays(sub, name)
            if hidden is None:
                hidden = rk.shape[0]
            if fin is None:
                fin = k.shape[0]
            want_in = fin
            if (k.shape != (want_in, 4 * hidden) or rk.shape != (hidden, 4 * hidden)
                    or b.shape != (4 * hidden,)):
                raise ValueError(f"{name}: shape mismatch: kernel {k.shape}, recurrent_kernel "
                                 f"{rk.shape}, bias {b.shape}; expected ({want_in}, {4 * hidden}), "
                                 f"({hidden}, {4 * hidden}), ({4 * hidden},)")
            cell = {}
            for g, flax_g in enumerate(("i", "f", "g", "o")):
                sl = slice(g * hidden, (g + 1) * hidden)
                cell[f"i{flax_g}"] = {"kernel": k[:, sl]}
                cell[f"h{flax_g}"] = {"kernel": rk[:, sl], "bias": b[sl]}
            out[direction] = {"cell": cell}
        fin = 2 * hidden
        params[f"layer{i}"] = out
    if hidden is None:
        raise ValueError("no Bidirectional layers given")
    params["norm"] = {"scale": np.ones(2 * hidden, np.float32), "bias": np.zeros(2 * hidden, np.float32)}
    return params


# ----------------------------------------------------------------------------- ViolenceDetector
_VIOLENCE_LAYOUT = ("Dense(relu) BatchNormalization [Bidirectional(LSTM) BatchNormalization]+ "
                    "Dense(1, tanh) [Dense(relu) BatchNormalization]* Dense(softmax|linear)")


def _keras_activation(layer) -> str:
    act = layer.get_config().get("activation", "linear")
    return act if isinstance(act, str) else getattr(act, "__name__", str(act))


def _bn_arrays(layer) -> tuple[dict, dict]:
    cfg = layer.get_config()
    if not cfg.get("center", True) or not cfg.get("scale", True):
        raise ValueError(f"{layer.name}: BatchNormalization needs center=True and scale=True")
    axis = cfg.get("axis", -1)
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    if axis != -1 and axis != len(layer.input.shape) - 1:
        raise ValueError(f"{layer.name}: BatchNormalization axis={cfg.get('axis')} not supported "
                         "(need the last axis)")
    g, b, mu, var = (np.asarray(a, np.float32) for a in layer.get_weights())
    return {"scale": g, "bias": b}, {"mean": mu, "var": var}


def violence_from_keras(model) -> dict[str, Any]:
    """Keras seed-003 violence model -> ``{'params': ..., 'batch_stats': ...}`` (float32 numpy)
    for :class:`vad_jax.models.violence.ViolenceDetector`.

    Layers are matched by type and order (``model.layers``, ignoring Dropout, Add, Flatten,
    softmax/Repeat/Permute/Multiply/Lambda and other weightless layers), expecting
    ``Dense(relu) BN [Bidirectional(LSTM) BN]+ Dense(1, tanh) [Dense(relu) BN]* Dense``.
    Our model must be built with the same widths (``compress``, ``lstm``, ``dense``,
    ``num_classes``), ``residual`` as in the Keras graph, and the Keras BN epsilon/momentum
    (defaults 1e-3 / 0.99). A model of another structure raises ``ValueError``.
    """
    kinds = {"Dense": "D", "BatchNormalization": "N", "Bidirectional": "B"}
    seq = []
    for layer in model.layers:
        kind = kinds.get(type(layer).__name__)
        if kind is None:
            if layer.weights:
                raise ValueError(f"violence_from_keras: unexpected weighted layer {layer.name!r} "
                                 f"({type(layer).__name__}); expected {_VIOLENCE_LAYOUT}")
            continue
        seq.append((kind, layer))
    sig = "".join(k for k, _ in seq)
    m = re.fullmatch(r"DN((?:BN)+)D((?:DN)*)D", sig)
    if m is None:
        raise ValueError(f"violence_from_keras: layer types {sig!r} (D=Dense, N=BatchNormalization, "
                         f"B=Bidirectional) do not match {_VIOLENCE_LAYOUT}")
    n_lstm, n_dense = len(m.group(1)) // 2, len(m.group(2)) // 2
    layers = [layer for _, layer in seq]

    def dense(layer, want_act, units=None):
        act = _keras_activation(layer)
        if act not in want_act:
            raise ValueError(f"{layer.name}: Dense activation {act!r}, expected one of {want_act}")
        w = layer.get_weights()
        if len(w) != 2:
            raise ValueError(f"{layer.name}: Dense needs use_bias=True (got {len(w)} arrays)")
        if units is not None and w[0].shape[-1] != units:
            raise ValueError(f"{layer.name}: expected {units} units, got {w[0].shape[-1]}")
        return {"kernel": np.asarray(w[0], np.float32), "bias": np.asarray(w[1], np.float32)}

    params, stats = {}, {}
    it = iter(layers)
    params["compress"] = dense(next(it), ("relu",))
    params["compress_bn"], stats["compress_bn"] = _bn_arrays(next(it))
    for i in range(n_lstm):
        bi = next(it)
        params[f"lstm{i}"] = bilstm_from_keras([bi])["layer0"]
        params[f"lstm{i}_bn"], stats[f"lstm{i}_bn"] = _bn_arrays(next(it))
    params["attention"] = dense(next(it), ("tanh",), units=1)
    for i in range(n_dense):
        params[f"dense{i}"] = dense(next(it), ("relu",))
        params[f"dense{i}_bn"], stats[f"dense{i}_bn"] = _bn_arrays(next(it))
    params["logits"] = dense(next(it), ("softmax", "linear"))
    return {"params": params, "batch_stats": stats}
