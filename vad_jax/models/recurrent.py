"""Stacked bidirectional LSTM over per-frame features, and Keras-exact LSTMs with Keras dropout (Flax Linen)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import flax.linen as nn
from flax.linen.recurrent import DenseParams  # OptimizedLSTMCell's parameter layout

__all__ = ["BiLSTM", "bilstm_param_count", "KerasLSTMWeights", "KerasLSTM", "KerasBidirectionalLSTM",
           "keras_lstm", "keras_bidirectional_lstm", "keras_dropout_masks"]


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


class KerasLSTMWeights(nn.Module):
    """The parameters of one Keras LSTM direction, in ``nn.OptimizedLSTMCell``'s layout:
    ``i{i,f,g,o}/kernel`` [in, h] and ``h{i,f,g,o}/{kernel [h, h], bias [h]}`` (Keras gate order
    i, f, c, o), Keras-style init (glorot-uniform input kernels, orthogonal recurrent ones, forget
    bias 1). ``__call__(inputs [..., in])`` -> ``(kx [4, in, h], kh [4, h, h], b [4h])`` in
    ``param_dtype``. Lives at ``.../cell`` (the path ``nn.RNN`` gave the cell).
    """

    features: int
    unit_forget_bias: bool = True
    kernel_init: Any = nn.initializers.glorot_uniform()
    recurrent_kernel_init: Any = nn.initializers.orthogonal()
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, inputs):
        h0 = jnp.zeros((self.features,), self.param_dtype)  # only its shape is used
        kx, kh, b = [], [], []
        for g in _GATES:
            kx.append(DenseParams(self.features, use_bias=False, param_dtype=self.param_dtype,
                                  kernel_init=self.kernel_init, name=f"i{g}")(inputs)[0])
            k, bias = DenseParams(self.features, use_bias=True, param_dtype=self.param_dtype,
                                  kernel_init=self.recurrent_kernel_init,
                                  bias_init=_keras_bias_init(self.unit_forget_bias and g == "f"),
                                  name=f"h{g}")(h0)
            kh.append(k)
            b.append(bias)
        return jnp.stack(kx), jnp.stack(kh), jnp.concatenate(b)


def _check_rates(dropout: float, recurrent_dropout: float):
    for name, r in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
        if not 0.0 <= r < 1.0:
            raise ValueError(f"Keras LSTM: {name} must be in [0, 1), got {r}")


def _direction(module, x):
    """Inside ``module``'s compact method: its ``cell`` parameters and its dropout masks for
    the sequence batch ``x`` [B, T, F] (drawn ONCE here from ``module``'s 'dropout' rng, so
    each direction draws its own) -> ``(kx, kh, b, mx, mh)``, masks None where unused."""
    _check_rates(module.dropout, module.recurrent_dropout)
    kx, kh, b = KerasLSTMWeights(module.features, unit_forget_bias=module.unit_forget_bias,
                                 kernel_init=module.kernel_init,
                                 recurrent_kernel_init=module.recurrent_kernel_init,
                                 param_dtype=module.param_dtype, name="cell")(x)
    mx = mh = None
    if not module.deterministic and (module.dropout > 0 or module.recurrent_dropout > 0):
        bsz, _, fin = x.shape
        mx, mh = keras_dropout_masks(module.make_rng("dropout"), (bsz, fin), (bsz, module.features),
                                     module.dropout, module.recurrent_dropout, module.dtype)
    return kx, kh, b, mx, mh


def _keras_lstm_scan(x, directions, reverse, *, dtype, param_dtype, unroll):
    """Runs D LSTM directions over ``x`` [B, T, F] in one ``lax.scan`` -> [B, T, D*h]
    (direction d's outputs at [..., d*h:(d+1)*h], all in time order).

    ``directions``: D tuples ``(kx [4,F,h], kh [4,h,h], b [4h], mx, mh)`` from
    :func:`_direction` (the same mask layout for all); ``reverse``: D bools (True: the direction
    reads time backwards, as Keras' backward layer; its outputs are flipped back). The input part
    ``(x * mx[g]) @ Wx_g + b_g`` of every gate, step and direction is one batched matmul before
    the scan (one [B*T, F] @ [F, D*4h] matmul when there is no per-gate mask); the scan only adds
    the recurrent part ``(h * mh[g]) @ Wh_g``. Masks are fixed over time (Keras semantics).
    """
    bsz, t, fin = x.shape
    nd, hdim = len(directions), directions[0][1].shape[-1]
    x = x.astype(dtype)
    kx = jnp.stack([d[0] for d in directions]).astype(dtype)   # [D, 4, F, h]
    kh = jnp.stack([d[1] for d in directions]).astype(dtype)   # [D, 4, h, h]
    b = jnp.stack([d[2] for d in directions]).astype(dtype)    # [D, 4h]
    mx = None if directions[0][3] is None else jnp.stack([d[3] for d in directions])
    mh = None if directions[0][4] is None else jnp.stack([d[4] for d in directions])
    # gate-concatenated kernels [D, in, 4h] (column g*h + j = gate g, unit j)
    cat = lambda k: jnp.moveaxis(k, 1, 2).reshape(nd, k.shape[2], 4 * hdim)

    if mx is None:                          # [B*T, F] @ [F, D*4h]
        w = jnp.moveaxis(cat(kx), 0, 1).reshape(fin, nd * 4 * hdim)
        z = (x.reshape(bsz * t, fin) @ w).reshape(bsz, t, nd, 4 * hdim).transpose(1, 2, 0, 3)
    elif mx.ndim == 3:                      # one mask [D, B, F] shared by the gates
        z = jnp.einsum("dbtf,dfn->tdbn", x[None] * mx[:, :, None, :], cat(kx))
    else:                                   # per-gate masks [D, 4, B, F]
        z = jnp.einsum("dgbtf,dgfh->tdbgh", x[None, None] * mx[:, :, :, None, :], kx)
        z = z.reshape(t, nd, bsz, 4 * hdim)
    z = z + b[:, None, :]                                      # [T, D, B, 4h]
    flip = lambda y: jnp.stack([y[::-1, d] if r else y[:, d] for d, r in enumerate(reverse)], 1)
    z = flip(z)                                                # step s of direction d at z[s, d]

    if mh is None:
        khc = cat(kh)                                          # [D, h, 4h]
        recurrent = lambda h: jnp.einsum("dbk,dkn->dbn", h, khc)
    else:                                                      # per-gate masks [D, 4, B, h]
        recurrent = lambda h: jnp.einsum("dgbk,dgkh->dbgh", h[:, None] * mh, kh).reshape(
            nd, bsz, 4 * hdim)
    carry_dtype = jnp.promote_types(dtype, param_dtype)

    def step(carry, zt):
        c, h = carry
        zt = zt + recurrent(h.astype(dtype))
        zi, zf, zg, zo = jnp.split(zt, 4, axis=-1)
        c = (nn.sigmoid(zf) * c + nn.sigmoid(zi) * jnp.tanh(zg)).astype(carry_dtype)
        h = (nn.sigmoid(zo) * jnp.tanh(c)).astype(carry_dtype)
        return (c, h), h

    zeros = jnp.zeros((nd, bsz, hdim), carry_dtype)
    _, ys = jax.lax.scan(step, (zeros, zeros), z, unroll=unroll)   # [T, D, B, h]
    return flip(ys).transpose(2, 0, 1, 3).reshape(bsz, t, nd * hdim)


_UNROLL = 4  # time steps per scan iteration (T = 20 in the seed model); measured on CPU


class KerasLSTM(nn.Module):
    """Keras 3 ``LSTM(features, dropout, recurrent_dropout, return_sequences=True)``:
    x [B,T,F] -> [B,T,features]; zero initial state, sigmoid gates, tanh.

    Parameters at ``cell/...`` (:class:`KerasLSTMWeights`). When ``deterministic=False`` (needs
    the 'dropout' rng) it applies Keras' dropout: masks from :func:`keras_dropout_masks`, drawn
    once per sequence batch and the SAME at every time step; per-gate masks when
    ``recurrent_dropout > 0``: gate g sees ``(x * mx[g]) @ Wx_g + (h * mh[g]) @ Wh_g + b_g``.
    ``reverse``: read time backwards, outputs kept in time order (Keras' backward layer).
    Written here because flax's cells have no (per-sequence, per-gate) dropout.
    """

    features: int
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    deterministic: bool = True
    reverse: bool = False
    unroll: int = _UNROLL
    unit_forget_bias: bool = True
    kernel_init: Any = nn.initializers.glorot_uniform()
    recurrent_kernel_init: Any = nn.initializers.orthogonal()
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return _keras_lstm_scan(x, [_direction(self, x)], (self.reverse,), dtype=self.dtype,
                                param_dtype=self.param_dtype, unroll=self.unroll)


class _KerasLSTMDirection(nn.Module):
    """One direction of :class:`KerasBidirectionalLSTM`: its parameters (``cell/...``) and
    dropout masks, see :func:`_direction`."""

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
    def __call__(self, x):
        return _direction(self, x)


class KerasBidirectionalLSTM(nn.Module):
    """Keras ``Bidirectional(LSTM(features, dropout, recurrent_dropout, return_sequences=True))``:
    x [B,T,F] -> [B,T,2*features] = [forward, backward], both in time order.

    Parameters at ``{forward,backward}_rnn/cell/...`` (as ``nn.Bidirectional`` of ``nn.RNN``
    gave them, and :class:`BiLSTM` has); each direction draws its own dropout masks (flax folds
    the module path into ``make_rng``, as Keras' two seed generators differ). Both directions
    run in one scan (the backward one on reversed time).
    """

    features: int
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    deterministic: bool = True
    unroll: int = _UNROLL
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kw = dict(dropout=self.dropout, recurrent_dropout=self.recurrent_dropout,
                  deterministic=self.deterministic, dtype=self.dtype, param_dtype=self.param_dtype)
        fwd = _KerasLSTMDirection(self.features, **kw, name="forward_rnn")(x)
        bwd = _KerasLSTMDirection(self.features, **kw, name="backward_rnn")(x)
        return _keras_lstm_scan(x, [fwd, bwd], (False, True), dtype=self.dtype,
                                param_dtype=self.param_dtype, unroll=self.unroll)


def keras_lstm(features: int, *, dropout: float = 0.0, recurrent_dropout: float = 0.0,
               deterministic: bool = True, dtype: Any = jnp.float32,
               param_dtype: Any = jnp.float32, **module_kwargs) -> KerasLSTM:
    """Keras ``LSTM(features, dropout, recurrent_dropout, return_sequences=True)``:
    x [B,T,F] -> [B,T,features], a :class:`KerasLSTM`. ``module_kwargs`` go to it (``name``,
    ``reverse``, ``unroll``, ``parent``).
    """
    return KerasLSTM(features, dropout=dropout, recurrent_dropout=recurrent_dropout,
                     deterministic=deterministic, dtype=dtype, param_dtype=param_dtype,
                     **module_kwargs)


def keras_bidirectional_lstm(features: int, *, dropout: float = 0.0, recurrent_dropout: float = 0.0,
                             deterministic: bool = True, dtype: Any = jnp.float32,
                             param_dtype: Any = jnp.float32,
                             name: str | None = None) -> KerasBidirectionalLSTM:
    """Keras ``Bidirectional(LSTM(features, dropout, recurrent_dropout, return_sequences=True))``:
    x [B,T,F] -> [B,T,2*features] = [forward, backward], both in time order; a
    :class:`KerasBidirectionalLSTM`. Call inside a compact method (binds there). Paths
    ``{name}/{forward,backward}_rnn/cell/...`` as in :class:`BiLSTM`; the two directions draw
    different dropout masks.
    """
    return KerasBidirectionalLSTM(features, dropout=dropout, recurrent_dropout=recurrent_dropout,
                                  deterministic=deterministic, dtype=dtype,
                                  param_dtype=param_dtype, name=name)
