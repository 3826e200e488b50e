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


def test_fused_bilstm_equals_the_flax_rnn_reference():
  """impl='fused' (one scan for both directions, input projection before it, hand-written
  gradient) == nn.Bidirectional(nn.RNN(nn.OptimizedLSTMCell)): the same parameter tree and
  initial values, outputs, and gradients w.r.t. parameters and inputs (dropout included)."""
  x = jax.random.normal(jax.random.key(1), (3, 7, 10))
  ref = BiLSTM(hidden=8, num_layers=2, dropout=0.3, impl='flax')
  fused = BiLSTM(hidden=8, num_layers=2, dropout=0.3, impl='fused')
  p_ref = jax.jit(lambda k: ref.init(k, x, train=False))(jax.random.key(0))
  p_fused = jax.jit(lambda k: fused.init(k, x, train=False))(jax.random.key(0))
  assert jax.tree.structure(p_ref) == jax.tree.structure(p_fused)
  for a, b in zip(jax.tree.leaves(p_ref), jax.tree.leaves(p_fused)):
    np.testing.assert_array_equal(a, b)
  for train in (False, True):
    def loss(m):
      def f(p, x):
        y = m.apply(p, x, train=train, rngs={'dropout': jax.random.key(2)})
        return jnp.sum(jnp.sin(3 * y)), y
      return jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))
    (l_ref, y_ref), g_ref = loss(ref)(p_ref, x)
    (l_fused, y_fused), g_fused = loss(fused)(p_ref, x)
    np.testing.assert_allclose(y_fused, y_ref, atol=2e-6)
    for a, b in zip(jax.tree.leaves(g_ref), jax.tree.leaves(g_fused)):
      np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
