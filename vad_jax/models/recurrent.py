"""Stacked bidirectional LSTM over per-frame features, and Keras-exact LSTMs with Keras dropout (Flax Linen)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import flax.linen as nn
from flax.linen.recurrent import DenseParams  # OptimizedLSTMCell's parameter layout

__all__ = ["BiLSTM", "bilstm_param_count", "KerasLSTMCell", "keras_lstm", "keras_bidirectional_lstm",
           "keras_dropout_masks"]


def bilstm_param_count(in_features: int, hidden: int, num_layers: int) -> int:
    """Parameters of :class:`BiLSTM`: 2 directions x 4*(in*h + h*h + h) per layer + LayerNorm."""
    n, fin = 0, in_features
    for _ in range(num_layers):
        n += 2 * 4 * (fin * hidden + hidden * hidden + hidden)
        fin = 2 * hidden
    return n + 2 * 2 * hidden


class BiLSTM(nn.Module):
    """x [B,T,F] -> [B,T,2*hidden].

    ``num_layers`` layers ``layer0``.. each ``nn.Bidirectional`` of two
    ``nn.RNN(nn.OptimizedLSTMCell)`` (``forward_rnn``/``backward_rnn``; the backward
    output keeps time order), outputs concatenated [fwd, bwd]; dropout between
    layers (not after the last; needs the 'dropout' rng when ``train``), then
    LayerNorm (``norm``) over 2*hidden. Zero initial state, sigmoid gates, tanh.
    """

    hidden: int = 256
    num_layers: int = 2
    dropout: float = 0.5
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = x.astype(self.dtype)
        # parent=None: unbound sub-modules get adopted by their wrapper, giving the paths
        # layer{i}/{forward,backward}_rnn/cell/... instead of siblings of the layer.
        cell = lambda: nn.OptimizedLSTMCell(self.hidden, dtype=self.dtype,
                                            param_dtype=self.param_dtype, parent=None)
        rnn = lambda: nn.RNN(cell(), parent=None)
        for i in range(self.num_layers):
            if i > 0 and self.dropout > 0:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
            x = nn.Bidirectional(rnn(), rnn(), name=f"layer{i}")(x)
        return nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="norm")(x)


# ----------------------------------------------------------------------------- Keras LSTM
_GATES = ("i", "f", "g", "o")  # Keras i, f, c, o


def keras_dropout_masks(rng: jax.Array, x_shape: tuple[int, ...], h_shape: tuple[int, ...],
                        dropout: float, recurrent_dropout: float, dtype: Any = jnp.float32):
    """Keras 3 LSTM dropout masks for one sequence batch -> (mask_x | None, mask_h | None).

    Values 0 or 1/(1-rate) (inverted dropout), one draw per sample and unit. With
    ``recurrent_dropout > 0`` Keras switches the cell to ``implementation=1``: 4 independent
    masks, one per gate (i, f, c, o), shapes [4, *x_shape] / [4, *h_shape]; otherwise one
    input mask [*x_shape] shared by the 4 gates. None where the rate is 0.
    """
    n = (4,) if recurrent_dropout > 0 else ()
    kx, kh = jax.random.split(rng)
    draw = lambda k, r, shape: (jax.random.bernoulli(k, 1.0 - r, n + tuple(shape))
                                .astype(dtype) / jnp.asarray(1.0 - r, dtype))
    return (draw(kx, dropout, x_shape) if dropout > 0 else None,
            draw(kh, recurrent_dropout, h_shape) if recurrent_dropout > 0 else None)


def _keras_bias_init(unit_forget_bias: bool):
    def init(key, shape, dtype=jnp.float32):  # per-gate [h]; forget gate starts at 1 as in Keras
        return (jnp.ones if unit_forget_bias else jnp.zeros)(shape, dtype)
    return init


class KerasLSTMCell(nn.RNNCellBase):
    """LSTM cell with Keras 3 ``LSTM(dropout=, recurrent_dropout=)`` semantics; carry (c, h) [..., h].

    Same maths and parameters as ``nn.OptimizedLSTMCell`` (``i{i,f,g,o}/kernel`` [in, h],
    ``h{i,f,g,o}/{kernel [h, h], bias [h]}``; Keras gate order i, f, c, o; sigmoid gates, tanh),
    Keras-style init (glorot-uniform input kernels, orthogonal recurrent ones, forget bias 1).
    When ``deterministic=False`` (needs the 'dropout' rng) it applies Keras' dropout: masks
    from :func:`keras_dropout_masks`, drawn per sequence and the SAME at every time step, which
    holds when the cell runs in ``nn.RNN(..., split_rngs={'params': False, 'dropout': False})``
    (every step then draws from the same key; use :func:`keras_lstm`). Per-gate masks
    (``recurrent_dropout > 0``): gate g sees ``(x * mx[g]) @ Wx_g + (h * mh[g]) @ Wh_g + b_g``.
    Written here because flax's cells have no (per-sequence, per-gate) dropout.
    """

    features: int
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    deterministic: bool = True
    unit_forget_bias: bool = True
    kernel_init: Any = nn.initializers.glorot_uniform()
    recurrent_kernel_init: Any = nn.initializers.orthogonal()
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, carry, inputs):
        for name, r in (("dropout", self.dropout), ("recurrent_dropout", self.recurrent_dropout)):
            if not 0.0 <= r < 1.0:
                raise ValueError(f"KerasLSTMCell: {name} must be in [0, 1), got {r}")
        c, h = carry
        kx, kh, b = [], [], []
        for g in _GATES:
            kx.append(DenseParams(self.features, use_bias=False, param_dtype=self.param_dtype,
                                  kernel_init=self.kernel_init, name=f"i{g}")(inputs)[0])
            k, bias = DenseParams(self.features, use_bias=True, param_dtype=self.param_dtype,
                                  kernel_init=self.recurrent_kernel_init,
                                  bias_init=_keras_bias_init(self.unit_forget_bias and g == "f"),
                                  name=f"h{g}")(h)
            kh.append(k)
            b.append(bias)
        x_in, h_in = inputs.astype(self.dtype), h.astype(self.dtype)
        kx, kh = jnp.stack(kx).astype(self.dtype), jnp.stack(kh).astype(self.dtype)  # [4,in,h] [4,h,h]
        b = jnp.concatenate(b).astype(self.dtype)                                      # [4h]
        mx = mh = None
        if not self.deterministic and (self.dropout > 0 or self.recurrent_dropout > 0):
            mx, mh = keras_dropout_masks(self.make_rng("dropout"), x_in.shape, h_in.shape,
                                         self.dropout, self.recurrent_dropout, self.dtype)

        def project(v, k, m):  # v [..., d], k [4, d, h], m None | [..., d] | [4, ..., d] -> [..., 4h]
            if m is not None and m.ndim > v.ndim:  # per-gate masks: one batched matmul
                y = jnp.einsum("g...d,gdh->...gh", v * m, k)
                return y.reshape(*y.shape[:-2], -1)
            v = v if m is None else v * m
            return v @ jnp.moveaxis(k, 0, 1).reshape(k.shape[1], -1)

        z = project(x_in, kx, mx) + project(h_in, kh, mh) + b
        zi, zf, zg, zo = jnp.split(z, 4, axis=-1)
        new_c = nn.sigmoid(zf) * c + nn.sigmoid(zi) * jnp.tanh(zg)
        new_h = nn.sigmoid(zo) * jnp.tanh(new_c)
        return (new_c, new_h), new_h

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        shape = tuple(input_shape[:-1]) + (self.features,)
        return jnp.zeros(shape, self.param_dtype), jnp.zeros(shape, self.param_dtype)

    @property
    def num_feature_axes(self) -> int:
        return 1


def keras_lstm(features: int, *, dropout: float = 0.0, recurrent_dropout: float = 0.0,
               deterministic: bool = True, dtype: Any = jnp.float32,
               param_dtype: Any = jnp.float32, **module_kwargs) -> nn.RNN:
    """Keras ``LSTM(features, dropout, recurrent_dropout, return_sequences=True)``:
    x [B,T,F] -> [B,T,features]. An ``nn.RNN`` of :class:`KerasLSTMCell` whose 'dropout' rng is
    not split over steps, so the masks are fixed over time; zero initial state.
    ``module_kwargs`` go to ``nn.RNN`` (``name``; ``parent=None`` leaves it unbound for a
    wrapper such as ``nn.Bidirectional`` to adopt).
    """
    cell = KerasLSTMCell(features, dropout=dropout, recurrent_dropout=recurrent_dropout,
                         deterministic=deterministic, dtype=dtype, param_dtype=param_dtype,
                         parent=None)
    return nn.RNN(cell, split_rngs={"params": False, "dropout": False}, **module_kwargs)


def keras_bidirectional_lstm(features: int, *, dropout: float = 0.0, recurrent_dropout: float = 0.0,
                             deterministic: bool = True, dtype: Any = jnp.float32,
                             param_dtype: Any = jnp.float32, name: str | None = None) -> nn.Bidirectional:
    """Keras ``Bidirectional(LSTM(features, dropout, recurrent_dropout, return_sequences=True))``:
    x [B,T,F] -> [B,T,2*features] = [forward, backward], both in time order.

    Call inside a compact method (binds there). Paths ``{name}/{forward,backward}_rnn/cell/...``
    as in :class:`BiLSTM`; flax folds the module path into ``make_rng``, so the two directions
    draw different dropout masks (as Keras' two seed generators do).
    """
    rnn = lambda: keras_lstm(features, dropout=dropout, recurrent_dropout=recurrent_dropout,
                             deterministic=deterministic, dtype=dtype, param_dtype=param_dtype,
                             parent=None)
    return nn.Bidirectional(rnn(), rnn(), name=name)
