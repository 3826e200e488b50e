import numpy as np
import pytest
from sklearn import metrics as skm

from vad_jax.evaluate.metrics import (average_precision, confusion_matrix, pr_auc_trapezoid,
                                      per_class_accuracy, roc_auc)


def _cases():
  rng = np.random.default_rng(0)
  for n in (2, 7, 50, 1000):
    for tie_levels in (None, 3, 10):
      for _ in range(3):
        y = rng.integers(0, 2, n)
        y[0], y[-1] = 0, 1  # both classes present
        if tie_levels is None:
          s = rng.normal(size=n) + y
        else:
          s = rng.integers(0, tie_levels, n).astype(np.float64) + (y * rng.integers(0, 2, n))
        yield y, s


def test_roc_auc_matches_sklearn():
  for y, s in _cases():
    assert abs(roc_auc(y, s) - skm.roc_auc_score(y, s)) < 1e-12


def test_average_precision_matches_sklearn():
  for y, s in _cases():
    assert abs(average_precision(y, s) - skm.average_precision_score(y, s)) < 1e-12


def test_all_tied_and_perfect():
  y = np.array([0, 1, 1, 0, 1])
  assert roc_auc(y, np.zeros(5)) == 0.5
  assert average_precision(y, np.zeros(5)) == pytest.approx(0.6)
  assert roc_auc(y, y * 1.0) == 1.0
  assert average_precision(y, y * 1.0) == 1.0
  assert roc_auc(y, -y * 1.0) == 0.0
  assert average_precision(np.array([True, False]), np.array([0.2, 0.9])) == 0.5


def test_one_class_raises():
  with pytest.raises(ValueError, match="one class"):
    roc_auc(np.ones(4), np.arange(4.0))
  with pytest.raises(ValueError, match="one class"):
    roc_auc(np.zeros(4), np.arange(4.0))
  with pytest.raises(ValueError, match="positive"):
    average_precision(np.zeros(4), np.arange(4.0))
  assert average_precision(np.ones(4), np.arange(4.0)) == 1.0


def test_confusion_matrix_matches_sklearn():
  rng = np.random.default_rng(1)
  for c in (2, 5, 14):
    y = rng.integers(0, c, 300)
    p = rng.integers(0, c, 300)
    cm = confusion_matrix(y, p, c)
    assert cm.dtype == np.int64 and cm.shape == (c, c)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, p, labels=np.arange(c)))
  with pytest.raises(ValueError):
    confusion_matrix([0, 3], [0, 1], 3)


def test_per_class_accuracy():
  y = np.array([0, 0, 1, 1, 1, 3])
  p = np.array([0, 1, 1, 1, 0, 2])
  acc = per_class_accuracy(confusion_matrix(y, p, 4))
  np.testing.assert_allclose(acc[[0, 1, 3]], [0.5, 2 / 3, 0.0])
  assert np.isnan(acc[2])
  np.testing.assert_allclose(acc[[0, 1, 3]], skm.recall_score(y, p, labels=[0, 1, 3], average=None))


def test_pr_auc_trapezoid_matches_sklearn_auc_of_pr_curve():
  """The XD-Violence / RTFM 'AP': auc(recall, precision) of precision_recall_curve."""
  rng = np.random.default_rng(3)
  for n, ties in [(50, False), (200, True), (7, True)]:
    y = rng.integers(0, 2, n)
    y[0] = 1
    s = np.round(rng.random(n), 1) if ties else rng.random(n)
    p, r, _ = skm.precision_recall_curve(y, s)
    assert abs(pr_auc_trapezoid(y, s) - skm.auc(r, p)) < 1e-12
    assert abs(pr_auc_trapezoid(y, s) - average_precision(y, s)) < 0.2
