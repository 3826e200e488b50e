"""Stacked bidirectional LSTM over per-frame features (Flax Linen)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import flax.linen as nn

__all__ = ["BiLSTM", "bilstm_param_count"]


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
