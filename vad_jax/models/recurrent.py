"""Stacked bidirectional LSTM over per-frame features, and Keras-exact LSTMs with Keras dropout (Flax Linen)."""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import flax.linen as nn
from flax.linen.recurrent import DenseParams  # OptimizedLSTMCell's parameter layout

__all__ = ["BiLSTM", "bilstm_param_count", "KerasLSTMWeights", "KerasLSTM",
           "KerasBidirectionalLSTM", "keras_lstm", "keras_bidirectional_lstm",
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

    ``num_layers`` layers ``layer0``.. each a bidirectional LSTM with the parameters
    ``nn.Bidirectional`` of two ``nn.RNN(nn.OptimizedLSTMCell)`` has
    (``{forward,backward}_rnn/cell/{ii,if,ig,io,hi,hf,hg,ho}``; the backward output keeps time
    order), outputs concatenated [fwd, bwd]; dropout between layers (not after the last; needs
    the 'dropout' rng when ``train``), then LayerNorm (``norm``) over 2*hidden. Zero initial
    state, sigmoid gates, tanh.

    ``impl``: 'fused' (default, every backend) runs both directions in one ``lax.scan`` with the
    input projection of all T steps done before it as one matmul and a hand-written gradient
    (:class:`KerasBidirectionalLSTM` without dropout: the same math and parameters); 'flax' runs
    ``nn.Bidirectional(nn.RNN(nn.OptimizedLSTMCell))``, the reference it is tested against
    (forward and gradients, same initial values).
    """

    hidden: int = 256
    num_layers: int = 2
    dropout: float = 0.5
    impl: str = "fused"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        if self.impl not in ("fused", "flax"):
            raise ValueError(f"BiLSTM impl={self.impl!r}; expected 'fused' or 'flax'")
        x = x.astype(self.dtype)
        # parent=None: unbound sub-modules get adopted by their wrapper, giving the paths
        # layer{i}/{forward,backward}_rnn/cell/... instead of siblings of the layer.
        cell = lambda: nn.OptimizedLSTMCell(self.hidden, dtype=self.dtype,
                                            param_dtype=self.param_dtype, parent=None)
        rnn = lambda: nn.RNN(cell(), parent=None)
        for i in range(self.num_layers):
            if i > 0 and self.dropout > 0:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
            if self.impl == "flax":
                x = nn.Bidirectional(rnn(), rnn(), name=f"layer{i}")(x)
            else:     # OptimizedLSTMCell's initializers: lecun-normal, orthogonal, zero bias
                x = KerasBidirectionalLSTM(
                    self.hidden, unit_forget_bias=False,
                    kernel_init=nn.initializers.lecun_normal(),
                    recurrent_kernel_init=nn.initializers.orthogonal(), dtype=self.dtype,
                    param_dtype=self.param_dtype, name=f"layer{i}")(x)
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
    bias 1). ``__call__(inputs [..., in])`` -> per-gate tuples ``(kx 4 x [in, h], kh 4 x [h, h],
    b 4 x [h])`` in ``param_dtype``. Lives at ``.../cell`` (the path ``nn.RNN`` gave the cell).
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
        return tuple(kx), tuple(kh), tuple(b)


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


# The recurrences below keep every gate as its own [.., B, h] array (tuples of 4), never a
# stacked [4, B, h] one: XLA:CPU turns "slice a stacked per-step input, then sigmoid/tanh it"
# into a slow fusion (~4x the whole cell's time), and its batched dot_general is slower than
# separate 2-D matmuls.

def _recurrence(zx, kh, mh, carry_dtype, unroll, save):
    """Forward LSTM recurrence of D independent directions in one ``lax.scan``, zero initial
    state. ``zx``: D x 4 x [T, B, h] input parts (bias included) of gates i, f, c, o, scan step
    s at [s]; ``kh``: D x 4 x [h, h]; ``mh``: D x (None | 4 x [B, h]) recurrent masks.
    Gate g: ``zx[g][s] + (h * mh[g]) @ kh[g]``. -> (D x [T, B, h] outputs, and when ``save``
    D x (i, f, g, o, c) [T, B, h] each, activations and cell states, for the gradient)."""
    dtype = zx[0][0].dtype
    bsz, hdim = zx[0][0].shape[1:]

    def step(carry, zt):
        new, out = [], []
        for (c, h), z, k, m in zip(carry, zt, kh, mh):
            hd = h.astype(dtype)
            r = [(hd if m is None else hd * m[q]) @ k[q] for q in range(4)]
            i, f = nn.sigmoid(z[0] + r[0]), nn.sigmoid(z[1] + r[1])
            g, o = jnp.tanh(z[2] + r[2]), nn.sigmoid(z[3] + r[3])
            c = (f * c + i * g).astype(carry_dtype)
            h = (o * jnp.tanh(c)).astype(carry_dtype)
            new.append((c, h))
            out.append((h, (i, f, g, o, c) if save else None))
        return tuple(new), tuple(out)

    zeros = jnp.zeros((bsz, hdim), carry_dtype)
    _, out = jax.lax.scan(step, tuple((zeros, zeros) for _ in zx), tuple(zx), unroll=unroll)
    return tuple(o[0] for o in out), (tuple(o[1] for o in out) if save else None)


@partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _lstm_recurrence(zx, kh, mh, carry_dtype, unroll):
    """:func:`_recurrence`'s outputs, with a hand-written gradient: the backward scan only
    carries (dh, dc) and emits the gate pre-activation cotangents (= those of ``zx``); the
    recurrent kernels' gradient is then one [h, T*B] @ [T*B, h] matmul a gate after the loop,
    instead of T accumulations inside it (autodiff of the scan). The masks ``mh`` are constants
    (dropout masks: their cotangent is returned as zeros)."""
    return _recurrence(zx, kh, mh, carry_dtype, unroll, save=False)[0]


def _lstm_recurrence_fwd(zx, kh, mh, carry_dtype, unroll):
    hs, saved = _recurrence(zx, kh, mh, carry_dtype, unroll, save=True)
    return hs, (kh, mh, hs, saved)


def _lstm_recurrence_bwd(carry_dtype, unroll, res, dhs):
    kh, mh, hs, saved = res
    dtype = saved[0][0].dtype
    shift = lambda a: jnp.concatenate([jnp.zeros_like(a[:1]), a[:-1]])  # value at the step before
    khT = tuple(tuple(k.T for k in ks) for ks in kh)

    def step(carry, inp):
        new, out = [], []
        for (dh, dc), (dh_out, (i, f, g, o, c, c_prev)), kT, m in zip(carry, inp, khT, mh):
            tc = jnp.tanh(c)
            dh = dh + dh_out
            dc = dc + dh * o * (1 - tc * tc)
            da = tuple(a.astype(dtype) for a in (dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                                                 dc * i * (1 - g * g), dh * tc * o * (1 - o)))
            dhm = [da[q] @ kT[q] for q in range(4)]             # d(h * m_q) of each gate
            dh_prev = sum(dhm) if m is None else sum(dhm[q] * m[q] for q in range(4))
            new.append((dh_prev.astype(carry_dtype), (dc * f).astype(carry_dtype)))
            out.append(da)
        return tuple(new), tuple(out)

    zeros = jnp.zeros(hs[0].shape[1:], carry_dtype)
    inputs = tuple((dh, (*s, shift(s[4]))) for dh, s in zip(dhs, saved))
    _, das = jax.lax.scan(step, tuple((zeros, zeros) for _ in hs), inputs, reverse=True,
                          unroll=unroll)                        # D x 4 x [T, B, h]
    dkh = []
    for h, da, ks, m in zip(hs, das, kh, mh):                  # sum over steps of h_prev^T @ da
        t, bsz, hdim = h.shape
        h_prev = shift(h).astype(dtype)
        rows = lambda a: a.reshape(t * bsz, hdim)
        masked = lambda q: h_prev if m is None else h_prev * m[q]
        dkh.append(tuple((rows(masked(q)).T @ rows(da[q])).astype(k.dtype)
                         for q, k in enumerate(ks)))
    return das, tuple(dkh), jax.tree.map(jnp.zeros_like, mh)


_lstm_recurrence.defvjp(_lstm_recurrence_fwd, _lstm_recurrence_bwd)


def _keras_lstm_scan(x, directions, reverse, *, dtype, param_dtype, unroll):
    """Runs D LSTM directions over ``x`` [B, T, F] in one ``lax.scan`` -> [B, T, D*h]
    (direction d's outputs at [..., d*h:(d+1)*h], all in time order).

    ``directions``: D tuples ``(kx 4 x [F,h], kh 4 x [h,h], b 4 x [h], mx, mh)`` from
    :func:`_direction` (the same mask layout for all); ``reverse``: D bools (True: the direction
    reads time backwards, as Keras' backward layer; its outputs are flipped back). The input part
    ``(x * mx[g]) @ Wx_g + b_g`` of every gate and step is computed before the scan, for all
    [B*T] rows at once (one [B*T, F] @ [F, 4h] matmul a direction unless the gates have their
    own masks); the scan (:func:`_lstm_recurrence`) only adds the recurrent part
    ``(h * mh[g]) @ Wh_g``. The masks are fixed over time (Keras semantics).
    """
    bsz, t, fin = x.shape
    hdim = directions[0][1][0].shape[-1]
    x = x.astype(dtype)
    zs, khs, mhs = [], [], []
    for (kx, kh, b, mx, mh), rev in zip(directions, reverse):
        kx = [k.astype(dtype) for k in kx]
        if mx is not None and mx.ndim == 3:                    # per-gate masks [4, B, F]
            z = [((x * mx[q][:, None]).reshape(bsz * t, fin) @ kx[q]).reshape(bsz, t, hdim)
                 for q in range(4)]
        else:                                                  # one mask [B, F] or none
            xm = x if mx is None else x * mx[:, None]
            z = xm.reshape(bsz * t, fin) @ jnp.concatenate(kx, axis=1)   # [F, 4h]
            z = jnp.split(z.reshape(bsz, t, 4 * hdim), 4, axis=-1)
        step_order = (lambda a: a[::-1]) if rev else (lambda a: a)
        zs.append(tuple(step_order(jnp.swapaxes(zq, 0, 1)) + bq.astype(dtype)
                        for zq, bq in zip(z, b)))             # 4 x [T, B, h], scan order
        khs.append(tuple(k.astype(dtype) for k in kh))
        mhs.append(None if mh is None else tuple(jax.lax.stop_gradient(mh.astype(dtype))))
    ys = _lstm_recurrence(tuple(zs), tuple(khs), tuple(mhs),
                          jnp.promote_types(dtype, param_dtype), unroll)   # D x [T, B, h]
    ys = [y[::-1] if rev else y for y, rev in zip(ys, reverse)]
    return jnp.swapaxes(jnp.concatenate(ys, axis=-1), 0, 1)


# Time steps per scan iteration. Measured on CPU (BiLSTM 96, B 64, T 20, forward + gradient of
# the recurrence): 1 -> 13.6 ms, 2 -> 19.0, 4 -> 33.1, 20 (full) -> 31.8; XLA:CPU does worse
# on the unrolled bodies.
_UNROLL = 1


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
    unit_forget_bias: bool = True
    kernel_init: Any = nn.initializers.glorot_uniform()
    recurrent_kernel_init: Any = nn.initializers.orthogonal()
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kw = dict(dropout=self.dropout, recurrent_dropout=self.recurrent_dropout,
                  deterministic=self.deterministic, unit_forget_bias=self.unit_forget_bias,
                  kernel_init=self.kernel_init, recurrent_kernel_init=self.recurrent_kernel_init,
                  dtype=self.dtype, param_dtype=self.param_dtype)
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
