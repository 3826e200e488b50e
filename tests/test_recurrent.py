"""BiLSTM tests."""

import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np

from vad_jax.models.efficientnet import count_params
from vad_jax.models.recurrent import BiLSTM, bilstm_param_count


def test_bilstm_shapes_params_order_dropout():
    B, T, F, H = 2, 6, 10, 8
    m = BiLSTM(hidden=H, num_layers=2, dropout=0.5)
    x = jax.random.normal(jax.random.PRNGKey(0), (B, T, F))
    v = jax.jit(lambda x: m.init(jax.random.PRNGKey(1), x, train=False))(x)
    per_dir = lambda fin: 4 * (fin * H + H * H + H)
    expected = 2 * per_dir(F) + 2 * per_dir(2 * H) + 2 * 2 * H  # + LayerNorm scale/bias
    assert count_params(v["params"]) == expected == bilstm_param_count(F, H, 2)
    assert set(v["params"]) == {"layer0", "layer1", "norm"}
    assert set(v["params"]["layer0"]) == {"forward_rnn", "backward_rnn"}

    apply = jax.jit(lambda v, x, rng: (m.apply(v, x, train=False),
                                       m.apply(v, x, train=True, rngs={"dropout": rng})))
    y, y_train = apply(v, x, jax.random.PRNGKey(2))
    assert y.shape == (B, T, 2 * H) and y.dtype == jnp.float32
    assert not np.allclose(y, y_train)  # dropout active between layers in train mode
    # one layer: the forward half is causal, the backward half sees the future in time order
    bi = nn.Bidirectional(nn.RNN(nn.OptimizedLSTMCell(H)), nn.RNN(nn.OptimizedLSTMCell(H)))
    f = jax.jit(lambda x: bi.apply({"params": v["params"]["layer0"]}, x))
    a, b = f(x), f(x.at[:, -1].add(1.0))
    np.testing.assert_allclose(a[:, :-1, :H], b[:, :-1, :H], atol=1e-6)
    assert not np.allclose(a[:, 0, H:], b[:, 0, H:])
