import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vad_jax.losses import focal as _focal
from vad_jax.losses import mil as _mil
from vad_jax.losses import regression as _reg
from vad_jax.losses import vae as _vae
from vad_jax.models import heads

# Eager JAX compiles every primitive separately (slow on small CPUs); test the
# jitted functions instead (one compile each), which also checks jit-ability.
class_alpha_from_counts = jax.jit(_focal.class_alpha_from_counts)
class_balanced_alpha = jax.jit(_focal.class_balanced_alpha)
softmax_focal_loss = jax.jit(_focal.softmax_focal_loss, static_argnames=("gamma",))
mil_ranking_loss = jax.jit(_mil.mil_ranking_loss)
smooth_l1 = jax.jit(_reg.smooth_l1)
vae_loss = jax.jit(_vae.vae_loss)
reparameterize = jax.jit(heads.reparameterize)
_mil_vg = jax.jit(jax.value_and_grad(_mil.mil_ranking_loss))
_mil_grad = jax.jit(jax.grad(_mil.mil_ranking_loss))


# ----------------------------------------------------------------- smooth L1
def _smooth_l1_ref(p, t, beta):
  out = []
  for a, b in zip(np.ravel(p), np.ravel(t)):
    d = abs(float(a) - float(b))
    out.append(0.5 * d * d / beta if d < beta else d - 0.5 * beta)
  return float(np.mean(out))


@pytest.mark.parametrize("beta", [1.0, 0.3, 2.5])
def test_smooth_l1(beta):
  rng = np.random.default_rng(0)
  p = rng.normal(size=(4, 6)) * 3
  t = rng.normal(size=(4, 6))
  d = np.abs(p - t)
  assert (d < beta).any() and (d >= beta).any()  # both branches exercised
  got = float(smooth_l1(jnp.asarray(p, jnp.float32), jnp.asarray(t, jnp.float32), beta))
  assert got == pytest.approx(_smooth_l1_ref(p, t, beta), rel=1e-5)


def test_smooth_l1_scalar_points():
  smooth_l1 = _reg.smooth_l1  # eager path
  # |d| = 0.5 < beta=1 -> 0.125 ; |d| = 3 > 1 -> 2.5 ; beta=2, |d|=1 -> 0.25
  assert float(smooth_l1(jnp.array([0.5]), jnp.array([0.0]))) == pytest.approx(0.125)
  assert float(smooth_l1(jnp.array([-3.0]), jnp.array([0.0]))) == pytest.approx(2.5)
  assert float(smooth_l1(jnp.array([1.0]), jnp.array([0.0]), beta=2.0)) == pytest.approx(0.25)
  assert float(smooth_l1(jnp.array([5.0]), jnp.array([0.0]), beta=2.0)) == pytest.approx(4.0)


# ----------------------------------------------------------- class weights
def test_class_alpha_from_counts():
  counts = np.array([100, 10, 0, 1])
  a = np.asarray(class_alpha_from_counts(jnp.asarray(counts), eps=1.0))
  inv = 1.0 / (counts + 1.0)
  np.testing.assert_allclose(a, inv / inv.mean(), rtol=1e-6)
  assert np.all(np.isfinite(a)) and a.mean() == pytest.approx(1.0)
  assert a[2] > a[3] > a[1] > a[0]


def test_class_balanced_alpha():
  counts = np.array([1000, 50, 3, 0])
  beta = 0.99
  a = np.asarray(class_balanced_alpha(jnp.asarray(counts), beta=beta))
  n = np.maximum(counts, 1)
  w = (1 - beta) / (1 - beta ** n)
  np.testing.assert_allclose(a, w * 4 / w.sum(), rtol=1e-5)
  assert a.sum() == pytest.approx(4.0, rel=1e-6)


# -------------------------------------------------------------------- focal
def _focal_ref(logits, labels, alpha, gamma, weights):
  n, c = logits.shape
  num = den = 0.0
  for i in range(n):
    z = logits[i].astype(np.float64)
    m = z.max()
    logsum = m + math.log(sum(math.exp(v - m) for v in z))
    logp = z[labels[i]] - logsum
    p = math.exp(logp)
    a = 1.0 if alpha is None else alpha[labels[i]]
    w = 1.0 if weights is None else weights[i]
    num += w * (-a * (1 - p) ** gamma * logp)
    den += w
  return num / max(den, 1e-300)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("use_alpha", [False, True])
@pytest.mark.parametrize("use_w", [False, True])
def test_focal_matches_reference(gamma, use_alpha, use_w):
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(9, 5)) * 2
  labels = rng.integers(0, 5, 9)
  alpha = rng.uniform(0.2, 3.0, 5) if use_alpha else None
  weights = rng.uniform(0, 2, 9) if use_w else None
  got = softmax_focal_loss(jnp.asarray(logits, jnp.float32), jnp.asarray(labels),
                           None if alpha is None else jnp.asarray(alpha, jnp.float32),
                           gamma, None if weights is None else jnp.asarray(weights, jnp.float32))
  assert float(got) == pytest.approx(_focal_ref(logits, labels, alpha, gamma, weights), rel=1e-5)


def test_focal_gamma0_is_weighted_ce():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(6, 3))
  labels = rng.integers(0, 3, 6)
  alpha = np.array([0.5, 1.0, 2.0])
  w = np.array([1.0, 0.0, 2.0, 1.0, 1.0, 0.5])
  lse = np.log(np.exp(logits).sum(1))
  ce = lse - logits[np.arange(6), labels]
  ref = np.sum(w * alpha[labels] * ce) / np.sum(w)
  assert float(softmax_focal_loss(logits, labels, alpha, 0.0, w)) == pytest.approx(float(ref), rel=1e-6)


def test_focal_confident_is_near_zero_and_finite():
  logits = jnp.array([[60.0, -60.0, 0.0], [0.0, 100.0, -100.0]])
  labels = jnp.array([0, 1])
  loss = softmax_focal_loss(logits, labels, gamma=2.0)
  assert np.isfinite(float(loss)) and 0.0 <= float(loss) < 1e-20
  g = jax.jit(jax.grad(lambda z: _focal.softmax_focal_loss(z, labels, gamma=2.0)))(logits)
  assert np.all(np.isfinite(np.asarray(g)))
  # Very wrong predictions stay finite too.
  bad = softmax_focal_loss(logits, jnp.array([1, 2]), gamma=2.0)
  assert np.isfinite(float(bad)) and float(bad) > 100


def test_focal_zero_weight_items_ignored():
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(5, 4)).astype(np.float32)
  labels = rng.integers(0, 4, 5)
  w = np.array([1.0, 1.0, 0.0, 1.0, 0.0], np.float32)
  padded = logits.copy()
  padded[2], padded[4] = 1e4, np.inf  # garbage rows
  full = softmax_focal_loss(padded, labels, gamma=2.0, weights=w)
  keep = np.array([0, 1, 3])
  sub = softmax_focal_loss(logits[keep], labels[keep], gamma=2.0)
  assert float(full) == pytest.approx(float(sub), rel=1e-6)
  assert float(softmax_focal_loss(logits, labels, weights=np.zeros(5, np.float32))) == 0.0


def test_focal_alpha_weighting():
  logits = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  labels = jnp.array([0, 0])
  base = softmax_focal_loss(logits, labels, gamma=1.0)
  scaled = softmax_focal_loss(logits, labels, alpha=jnp.array([3.0, 0.1]), gamma=1.0)
  assert float(scaled) == pytest.approx(3 * float(base), rel=1e-6)


# ---------------------------------------------------------------------- MIL
def _mil_ref(s, anom, margin, ls, lsp, valid=None):
  s = np.asarray(s, np.float64)
  b, k = s.shape
  valid = np.ones((b, k), bool) if valid is None else np.asarray(valid)
  ok = valid.any(1)
  mx = [max(s[i, j] for j in range(k) if valid[i, j]) if ok[i] else 0.0 for i in range(b)]
  A = [i for i in range(b) if anom[i] and ok[i]]
  N = [i for i in range(b) if not anom[i] and ok[i]]
  pairs = [max(0.0, margin - mx[a] + mx[n]) for a in A for n in N]
  rank = sum(pairs) / len(pairs) if pairs else 0.0
  regs = []
  for a in A:
    sm = sum((s[a, j] - s[a, j + 1]) ** 2 for j in range(k - 1) if valid[a, j] and valid[a, j + 1])
    sp = sum(s[a, j] for j in range(k) if valid[a, j])
    regs.append(ls * sm + lsp * sp)
  return rank + (sum(regs) / len(regs) if regs else 0.0)


def test_mil_hand_example_2x3():
  s = jnp.array([[0.1, 0.9, 0.3], [0.2, 0.6, 0.4]])
  anom = jnp.array([True, False])
  # rank: max(0, 0.5 - 0.9 + 0.6) = 0.2 ; smooth = 0.64 + 0.36 = 1.0 ; sparse = 1.3
  got = mil_ranking_loss(s, anom, margin=0.5, lambda_smooth=0.1, lambda_sparse=0.01)
  assert float(got) == pytest.approx(0.2 + 0.1 * 1.0 + 0.01 * 1.3, rel=1e-6)


def test_mil_random_vs_reference_jit():
  rng = np.random.default_rng(4)
  f = mil_ranking_loss
  for _ in range(5):
    s = rng.uniform(size=(6, 8))
    anom = rng.integers(0, 2, 6).astype(bool)
    valid = rng.uniform(size=(6, 8)) > 0.3
    valid[0] = False  # a fully padded bag
    got = f(jnp.asarray(s, jnp.float32), jnp.asarray(anom), 0.7, 0.05, 0.02, jnp.asarray(valid))
    assert float(got) == pytest.approx(_mil_ref(s, anom, 0.7, 0.05, 0.02, valid), rel=1e-5, abs=1e-7)
    got_nv = f(jnp.asarray(s, jnp.float32), jnp.asarray(anom), 0.7, 0.05, 0.02)
    assert float(got_nv) == pytest.approx(_mil_ref(s, anom, 0.7, 0.05, 0.02), rel=1e-5, abs=1e-7)


def test_mil_all_normal_is_zero():
  s = jnp.asarray(np.random.default_rng(5).uniform(size=(4, 5)), jnp.float32)
  loss = mil_ranking_loss(s, jnp.zeros(4, bool))
  assert float(loss) == 0.0
  g = _mil_grad(s, jnp.zeros(4, bool))
  assert np.all(np.asarray(g) == 0.0)


def test_mil_all_anomalous_only_regularisers():
  s = np.random.default_rng(6).uniform(size=(3, 4))
  loss = mil_ranking_loss(jnp.asarray(s, jnp.float32), jnp.ones(3, bool), 0.5, 0.1, 0.2)
  reg = np.mean([0.1 * np.sum(np.diff(r) ** 2) + 0.2 * np.sum(r) for r in s])
  assert float(loss) == pytest.approx(reg, rel=1e-5)


def test_mil_masked_clips_ignored():
  s = jnp.array([[0.1, 0.4, 0.99], [0.2, 0.3, 0.95]])  # padded clips hold garbage maxima
  valid = jnp.array([[True, True, False], [True, True, False]])
  anom = jnp.array([True, False])
  got = mil_ranking_loss(s, anom, 0.5, 0.1, 0.01, valid=valid)
  ref = mil_ranking_loss(s[:, :2], anom, 0.5, 0.1, 0.01)
  # rank: 0.5 - 0.4 + 0.3 = 0.4 ; smooth 0.09 ; sparse 0.5
  assert float(got) == pytest.approx(0.4 + 0.1 * 0.09 + 0.01 * 0.5, rel=1e-5)
  assert float(got) == pytest.approx(float(ref), rel=1e-6)


def test_mil_gradients_finite_with_ties():
  s = jnp.array([[0.5, 0.5, 0.5], [0.7, 0.7, 0.1], [0.0, 0.0, 0.0], [0.3, 0.3, 0.3]])
  anom = jnp.array([True, True, False, False])
  valid = jnp.array([[1, 1, 1], [1, 1, 0], [0, 0, 0], [1, 1, 1]], bool)
  for v in (None, valid):
    for a in (anom, jnp.zeros(4, bool), jnp.ones(4, bool)):
      loss, g = _mil_vg(s, a, 0.5, 8e-5, 8e-5, v)
      assert np.isfinite(float(loss))
      assert np.all(np.isfinite(np.asarray(g)))
  g = _mil_grad(s, anom, 0.5, 0.0, 0.0, valid)
  # fully padded bag and padded clip receive no gradient
  assert np.all(np.asarray(g)[2] == 0) and float(g[1, 2]) == 0.0


# ---------------------------------------------------------------------- VAE
def test_vae_kl_zero_at_prior():
  x = jnp.ones((3, 4))
  total, mse, kl = vae_loss(x, x, jnp.zeros((3, 2)), jnp.zeros((3, 2)))
  assert float(kl) == 0.0 and float(mse) == 0.0 and float(total) == 0.0


def test_vae_hand_example():
  recon = jnp.array([[1.0, 2.0], [0.0, 0.0]])
  x = jnp.array([[0.0, 0.0], [0.0, 2.0]])
  mu = jnp.array([[1.0], [0.0]])
  logvar = jnp.array([[0.0], [math.log(2.0)]])
  # mse per item: (1+4)/2 = 2.5, 4/2 = 2 -> mean 2.25
  # kl per item: -0.5*(1+0-1-1) = 0.5 ; -0.5*(1+ln2-0-2) = 0.5*(1-ln2)
  kl_items = np.array([0.5, 0.5 * (1 - math.log(2.0))])
  total, mse, kl = vae_loss(recon, x, mu, logvar, beta=0.1)
  assert float(mse) == pytest.approx(2.25)
  assert float(kl) == pytest.approx(kl_items.mean(), rel=1e-6)
  assert float(total) == pytest.approx(2.25 + 0.1 * kl_items.mean(), rel=1e-6)
  w = jnp.array([0.0, 1.0])
  total, mse, kl = vae_loss(recon, x, mu, logvar, 0.1, w)
  assert float(mse) == pytest.approx(2.0)
  assert float(kl) == pytest.approx(kl_items[1], rel=1e-6)


def test_vae_random_vs_numpy():
  rng = np.random.default_rng(7)
  recon, x = rng.normal(size=(2, 5, 3, 4))
  mu, lv = rng.normal(size=(2, 5, 6))
  total, mse, kl = vae_loss(*(jnp.asarray(a, jnp.float32) for a in (recon, x, mu, lv)), beta=0.5)
  mse_ref = np.mean(((recon - x) ** 2).reshape(5, -1).mean(1))
  kl_ref = np.mean(-0.5 * np.sum(1 + lv - mu ** 2 - np.exp(lv), axis=1))
  assert float(mse) == pytest.approx(mse_ref, rel=1e-5)
  assert float(kl) == pytest.approx(kl_ref, rel=1e-5)
  assert float(total) == pytest.approx(mse_ref + 0.5 * kl_ref, rel=1e-5)


def test_reparameterize():
  mu = jnp.full((20000, 2), 3.0)
  logvar = jnp.full((20000, 2), math.log(4.0))
  z = np.asarray(reparameterize(jax.random.PRNGKey(0), mu, logvar))
  assert z.shape == mu.shape
  assert z.mean() == pytest.approx(3.0, abs=0.05)
  assert z.std() == pytest.approx(2.0, abs=0.05)
  np.testing.assert_array_equal(reparameterize(jax.random.PRNGKey(0), mu, jnp.full_like(mu, -1e4)), mu)
