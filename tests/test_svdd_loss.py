import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vad_jax.losses import svdd as _svdd

# One compile each (eager JAX compiles every primitive); also checks jit-ability.
svdd_center = jax.jit(_svdd.svdd_center)
svdd_distance = jax.jit(_svdd.svdd_distance)
svdd_loss = jax.jit(_svdd.svdd_loss)
_loss_grad = jax.jit(jax.grad(_svdd.svdd_loss))


def _center_ref(z, w, eps):
  n, d = z.shape
  w = np.ones(n) if w is None else w
  c = []
  for j in range(d):
    m = sum(w[i] * float(z[i, j]) for i in range(n) if w[i] != 0) / sum(w)
    if abs(m) < eps:
      m = eps if m >= 0 else -eps
    c.append(m)
  return np.array(c)


def test_svdd_center_mean_and_eps_rule():
  # Column means: 0.05 (-> +eps), -0.05 (-> -eps), 0 (-> +eps), 0.3, -2 (kept).
  z = np.array([[0.1, -0.1, 1.0, 0.2, -1.0],
                [0.0, 0.0, -1.0, 0.4, -3.0]], np.float32)
  c = np.asarray(svdd_center(z, None, 0.1))
  np.testing.assert_allclose(c, [0.1, -0.1, 0.1, 0.3, -2.0], rtol=1e-6)
  np.testing.assert_allclose(c, _center_ref(z, None, 0.1), rtol=1e-6)


def test_svdd_center_weighted_ignores_garbage_rows():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(6, 8)).astype(np.float32) * 0.3
  w = np.array([1, 0, 2, 1, 0, 0.5], np.float32)
  bad = z.copy()
  bad[1], bad[4] = np.nan, np.inf
  for eps in (0.05, 0.2):
    got = np.asarray(svdd_center(bad, w, eps))
    ref = _center_ref(z, w, eps)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    assert np.all(np.abs(got) >= eps - 1e-7)
  assert np.any(np.abs(_center_ref(z, w, 0.0)) < 0.05)  # the eps rule is exercised


def test_svdd_distance():
  rng = np.random.default_rng(1)
  z = rng.normal(size=(2, 3, 4)).astype(np.float32)
  c = rng.normal(size=4).astype(np.float32)
  got = np.asarray(svdd_distance(z, c))
  assert got.shape == (2, 3)
  for a in range(2):
    for b in range(3):
      ref = sum((float(z[a, b, k]) - float(c[k])) ** 2 for k in range(4))
      assert got[a, b] == pytest.approx(ref, rel=1e-5)


def test_svdd_loss_weighted_mean_and_gradients():
  rng = np.random.default_rng(2)
  z = rng.normal(size=(5, 3)).astype(np.float32)
  c = np.array([0.5, -0.2, 0.1], np.float32)
  d = [sum((float(z[i, k]) - float(c[k])) ** 2 for k in range(3)) for i in range(5)]
  assert float(svdd_loss(z, c, None)) == pytest.approx(np.mean(d), rel=1e-5)
  w = np.array([1, 0, 1, 1, 0], np.float32)  # normal = 1, anomalous / padded = 0
  ref = sum(w[i] * d[i] for i in range(5)) / w.sum()
  bad = z.copy()
  bad[1], bad[4] = np.nan, -np.inf
  assert float(svdd_loss(bad, c, w)) == pytest.approx(ref, rel=1e-5)
  g = np.asarray(_loss_grad(jnp.asarray(bad), c, w))
  assert np.all(np.isfinite(g)) and np.all(g[[1, 4]] == 0)
  np.testing.assert_allclose(g[[0, 2, 3]], 2 * (z[[0, 2, 3]] - c) / 3, rtol=1e-5)
  assert float(svdd_loss(z, c, np.zeros(5, np.float32))) == 0.0
