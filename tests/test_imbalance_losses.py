import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import log_loss
from sklearn.utils.class_weight import compute_class_weight

from vad_jax.losses import focal as _focal
from vad_jax.losses import imbalance as _imb

# One compile each (eager JAX compiles every primitive); also checks jit-ability.
log_prior = jax.jit(_imb.log_prior)
logit_adjust = jax.jit(_imb.logit_adjust)
balanced_weights = jax.jit(_imb.balanced_weights)
balanced_cross_entropy = jax.jit(_imb.balanced_cross_entropy)
cb_focal = jax.jit(_imb.class_balanced_focal_loss)
focal = jax.jit(_focal.softmax_focal_loss)
supcon = jax.jit(_imb.supervised_contrastive_loss)
_supcon_vg = jax.jit(jax.value_and_grad(_imb.supervised_contrastive_loss))
_bce_grad = jax.jit(jax.grad(_imb.balanced_cross_entropy))
_cbf_grad = jax.jit(jax.grad(_imb.class_balanced_focal_loss))

f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731


# ------------------------------------------------------------ numpy references
def _log_softmax_row(z):
  m = max(z)
  lse = m + math.log(sum(math.exp(v - m) for v in z))
  return [v - lse for v in z]


def _weighted_focal_ref(logits, labels, alpha, gamma, weights):
  num = den = 0.0
  for i in range(len(labels)):
    w = 1.0 if weights is None else float(weights[i])
    if w == 0:
      continue
    logp = _log_softmax_row([float(v) for v in logits[i]])[labels[i]]
    a = 1.0 if alpha is None else float(alpha[labels[i]])
    num += w * (-a * (1.0 - math.exp(logp)) ** gamma * logp)
    den += w
  return num / den if den > 0 else 0.0


def _cb_alpha_ref(counts, beta):
  w = []
  for n in counts:
    n = max(int(n), 1)
    w.append((1.0 - beta) / (1.0 - beta ** n))
  s = sum(w)
  return [v * len(counts) / s for v in w]


def _supcon_ref(z, labels, t, weights=None):
  n = len(labels)
  keep = [True] * n if weights is None else [float(w) > 0 for w in weights]
  zn = []
  for i in range(n):
    if not keep[i]:
      zn.append(None)
      continue
    norm = math.sqrt(sum(float(v) ** 2 for v in z[i]))
    zn.append([float(v) / norm for v in z[i]])
  losses = []
  for i in range(n):
    if not keep[i]:
      continue
    cand = [a for a in range(n) if a != i and keep[a]]
    pos = [p for p in cand if labels[p] == labels[i]]
    if not pos:
      continue
    s = {a: sum(x * y for x, y in zip(zn[i], zn[a])) / t for a in cand}
    m = max(s.values())
    lse = m + math.log(sum(math.exp(s[a] - m) for a in cand))
    losses.append(-sum(s[p] - lse for p in pos) / len(pos))
  return sum(losses) / len(losses) if losses else 0.0


# ------------------------------------------------------------------ log prior
def test_log_prior_with_absent_class():
  counts = np.array([50, 0, 10, 3])
  got = np.asarray(log_prior(counts))
  clamped = [max(int(c), 1) for c in counts]
  ref = [math.log(c / sum(clamped)) for c in clamped]
  assert got.dtype == np.float32 and np.all(np.isfinite(got))
  np.testing.assert_allclose(got, ref, rtol=1e-6)
  assert float(np.exp(got).sum()) == pytest.approx(1.0, rel=1e-6)


# --------------------------------------------------------------- logit adjust
@pytest.mark.parametrize('tau', [0.5, 1.0, 2.0])
def test_logit_adjust_shifts_by_tau_log_prior_and_changes_the_loss(tau):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 4, 4)).astype(np.float32)  # any leading shape
  counts = np.array([90, 7, 2, 0])
  lp = log_prior(counts)
  adj = np.asarray(logit_adjust(logits, lp, tau))
  clamped = np.maximum(counts, 1)
  np.testing.assert_allclose(adj - logits, np.broadcast_to(tau * np.log(clamped / clamped.sum()),
                                                           logits.shape), rtol=1e-5, atol=1e-6)
  # The logit-adjusted loss: CE of the shifted logits, -log softmax(z + tau log pi)_y.
  z, y = logits.reshape(8, 4), np.array([0, 1, 2, 3, 1, 0, 0, 0])
  got = float(focal(f32(adj.reshape(8, 4)), y, None, 0.0))
  ref = []
  for i in range(8):
    shifted = [float(z[i, c]) + tau * math.log(clamped[c] / clamped.sum()) for c in range(4)]
    ref.append(-_log_softmax_row(shifted)[y[i]])
  assert got == pytest.approx(float(np.mean(ref)), rel=1e-5)
  raw = float(focal(f32(z), y, None, 0.0))
  assert got != pytest.approx(raw, rel=1e-3)  # tau is not ignored
  np.testing.assert_array_equal(np.asarray(logit_adjust(logits, lp, 0.0)), logits)


# --------------------------------------------------------- class-balanced focal
def test_class_balanced_focal_matches_reference_with_singleton_and_absent_class():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(8, 4)).astype(np.float32) * 2
  labels = np.array([0, 0, 0, 2, 0, 1, 2, 0])  # class 1: one example; class 3: none
  counts = np.array([500, 1, 40, 0])
  beta, gamma = 0.99, 2.5
  alpha = _cb_alpha_ref(counts, beta)
  assert alpha[1] == pytest.approx(alpha[3])  # an absent class weighs like a singleton
  np.testing.assert_allclose(np.asarray(_focal.class_balanced_alpha(counts, beta)), alpha,
                             rtol=1e-5)
  got = float(cb_focal(logits, labels, counts, beta, gamma))
  assert got == pytest.approx(_weighted_focal_ref(logits, labels, alpha, gamma, None), rel=1e-5)
  # The singleton's alpha dominates: its row alone carries most of the loss weight.
  assert alpha[1] > 10 * alpha[0]
  # Masked rows (garbage logits) are ignored.
  w = np.array([1, 1, 0, 1, 0, 1, 1, 1], np.float32)
  bad = logits.copy()
  bad[2], bad[4] = np.inf, np.nan
  got_w = float(cb_focal(bad, labels, counts, beta, gamma, w))
  assert got_w == pytest.approx(_weighted_focal_ref(logits, labels, alpha, gamma, w), rel=1e-5)
  g = np.asarray(_cbf_grad(f32(bad), labels, counts, beta, gamma, w))
  assert np.all(np.isfinite(g)) and np.all(g[[2, 4]] == 0)


@pytest.mark.parametrize('beta', [0.0, 1e-6])
def test_class_balanced_focal_beta_to_zero_is_plain_focal(beta):
  rng = np.random.default_rng(2)
  logits = f32(rng.normal(size=(8, 4)))
  labels = rng.integers(0, 4, 8)
  counts = np.array([1000, 3, 1, 0])
  got = float(cb_focal(logits, labels, counts, beta, 2.5))
  plain = float(focal(logits, labels, None, 2.5))
  assert got == pytest.approx(plain, rel=1e-5)
  assert float(cb_focal(logits, labels, counts, 0.999, 2.5)) != pytest.approx(plain, rel=1e-2)


# -------------------------------------------------------------- balanced CE
def test_balanced_weights_match_sklearn_and_clamp_absent():
  y = np.array([0] * 12 + [1] * 1 + [2] * 5)
  counts = np.bincount(y, minlength=3)
  ref = compute_class_weight('balanced', classes=np.arange(3), y=y)
  np.testing.assert_allclose(np.asarray(balanced_weights(counts)), ref, rtol=1e-6)
  got = np.asarray(balanced_weights(np.array([5, 0, 3])))
  np.testing.assert_allclose(got, [8 / (3 * 5), 8 / 3, 8 / (3 * 3)], rtol=1e-6)


def _softmax(z):
  e = np.exp(z - z.max(1, keepdims=True))
  return e / e.sum(1, keepdims=True)


def test_balanced_cross_entropy_matches_sklearn_log_loss():
  rng = np.random.default_rng(3)
  n, c = 8, 4
  logits = rng.normal(size=(n, c)) * 2
  labels = np.array([0, 0, 2, 0, 1, 2, 0, 2])  # class 1 a singleton, class 3 absent
  counts = np.array([40, 1, 7, 0])
  a = compute_class_weight('balanced', classes=np.arange(3), y=np.repeat(np.arange(3), counts[:3]))
  a = np.append(a * 3 / 4, counts.sum() / 4)  # 4 classes, the absent one clamped to a count of 1
  np.testing.assert_allclose(np.asarray(balanced_weights(counts)), a, rtol=1e-6)
  w = rng.uniform(0.5, 2.0, n)
  for weights in (None, w):
    sw = a[labels] * (1.0 if weights is None else weights)
    ref = log_loss(labels, _softmax(logits), sample_weight=sw, labels=range(c))
    got = float(balanced_cross_entropy(f32(logits), labels, counts,
                                       None if weights is None else f32(weights)))
    assert got == pytest.approx(ref, rel=1e-5)
  unweighted = float(focal(f32(logits), labels, None, 0.0))
  assert abs(float(balanced_cross_entropy(f32(logits), labels, counts)) - unweighted) > 0.05


def test_balanced_cross_entropy_zero_weight_rows_ignored():
  rng = np.random.default_rng(4)
  logits = rng.normal(size=(8, 4)).astype(np.float32)
  labels = np.array([0, 1, 2, 0, 1, 0, 3, 0])
  counts = np.array([30, 5, 2, 1])
  w = np.array([1, 0, 1, 1, 0, 1, 1, 1], np.float32)
  bad = logits.copy()
  bad[1], bad[4] = np.nan, -np.inf
  keep = w > 0
  a = counts.sum() / (4 * counts)
  ref = log_loss(labels[keep], _softmax(logits[keep].astype(np.float64)),
                 sample_weight=a[labels[keep]], labels=range(4))
  assert float(balanced_cross_entropy(bad, labels, counts, w)) == pytest.approx(ref, rel=1e-5)
  g = np.asarray(_bce_grad(f32(bad), labels, counts, w))
  assert np.all(np.isfinite(g)) and np.all(g[~keep] == 0) and np.any(g[keep] != 0)
  assert float(balanced_cross_entropy(logits, labels, counts, np.zeros(8, np.float32))) == 0.0


# -------------------------------------------------------------------- SupCon
# All SupCon calls share one shape [8, 4] (one compile each of the loss and its gradient).
@pytest.mark.parametrize('t', [0.1, 0.5])
def test_supcon_matches_reference_and_excludes_singleton_anchor(t):
  rng = np.random.default_rng(5)
  z = rng.normal(size=(8, 4)).astype(np.float32) * 3  # not unit norm: normalised inside
  labels = np.array([0, 0, 1, 2, 2, 2, 0, 3])  # classes 1 and 3 have a single example each
  got = float(supcon(z, labels, t))
  ref = _supcon_ref(z, labels, t)
  assert got == pytest.approx(ref, rel=1e-5)
  # The singletons are candidates in every denominator but no anchors: including them as
  # anchors with loss 0 would give 6/8 of the reference.
  assert got != pytest.approx(ref * 6 / 8, rel=1e-3)
  assert float(supcon(z * 0.01, labels, t)) == pytest.approx(got, rel=1e-5)


def test_supcon_masked_rows_ignored_and_gradients_finite():
  rng = np.random.default_rng(6)
  z = rng.normal(size=(8, 4)).astype(np.float32)
  labels = np.array([0, 1, 0, 1, 2, 2, 0, 1])
  w = np.array([1, 1, 1, 0, 1, 0, 1, 1], np.float32)  # class 2 left with one example
  bad = z.copy()
  bad[3], bad[5] = np.nan, np.inf
  loss, g = _supcon_vg(f32(bad), labels, 0.1, f32(w))
  ref = _supcon_ref(z, labels, 0.1, w)
  assert float(loss) == pytest.approx(ref, rel=1e-5)
  # Row 3 (a masked class-1 row) would otherwise be a positive of rows 1 and 7.
  assert ref != pytest.approx(_supcon_ref(z, labels, 0.1), rel=1e-3)
  g, kept = np.asarray(g), w > 0
  assert np.all(np.isfinite(g)) and np.all(g[~kept] == 0) and np.any(g[kept] != 0)


def test_supcon_degenerate_batches_are_finite():
  z = f32(np.random.default_rng(7).normal(size=(8, 4)))
  ones = f32(np.ones(8))
  # No positives at all -> 0, zero gradient.
  loss, g = _supcon_vg(z, np.arange(8), 0.1, ones)
  assert float(loss) == 0.0 and np.all(np.asarray(g) == 0)
  # Everything masked -> 0.
  loss, g = _supcon_vg(z, np.zeros(8, np.int32), 0.1, f32(np.zeros(8)))
  assert float(loss) == 0.0 and np.all(np.asarray(g) == 0)
  # A single valid row: no candidates at all.
  loss, g = _supcon_vg(z, np.zeros(8, np.int32), 0.1, f32(np.eye(8)[1]))
  assert float(loss) == 0.0 and np.all(np.isfinite(np.asarray(g)))
  # Near-identical embeddings at a tiny temperature stay finite and match the reference.
  near = np.ones((8, 4), np.float32) + 1e-3 * np.random.default_rng(8).normal(size=(8, 4))
  lab = np.array([0, 0, 1, 1, 1, 2, 2, 0])
  loss, g = _supcon_vg(f32(near), lab, 0.01, ones)
  assert np.isfinite(float(loss)) and np.all(np.isfinite(np.asarray(g)))
  assert float(loss) == pytest.approx(_supcon_ref(near, lab, 0.01), rel=1e-3)
