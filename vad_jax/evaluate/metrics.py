"""Host-side (numpy) evaluation metrics. No scikit-learn dependency."""

from __future__ import annotations

import numpy as np


def _binary_inputs(labels, scores):
  y = np.asarray(labels).ravel()
  s = np.asarray(scores, dtype=np.float64).ravel()
  if y.shape != s.shape:
    raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
  if y.size == 0:
    raise ValueError("empty labels/scores")
  if not np.all((y == 0) | (y == 1)):
    raise ValueError("labels must be binary in {0, 1}")
  if not np.all(np.isfinite(s)):
    raise ValueError("scores contain NaN or inf")
  return y.astype(bool), s


def _average_ranks(s: np.ndarray) -> np.ndarray:
  """1-based ranks of s, ties receive the average of their ranks."""
  order = np.argsort(s, kind="mergesort")
  ss = s[order]
  # Boundaries of runs of equal values.
  starts = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]])
  ends = np.r_[starts[1:], ss.size]  # exclusive
  avg = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
  ranks = np.empty(s.size, np.float64)
  ranks[order] = np.repeat(avg, ends - starts)
  return ranks


def roc_auc(labels, scores) -> float:
  """Exact area under the ROC curve (== sklearn.metrics.roc_auc_score).

  Computed as the Mann-Whitney U statistic with average ranks for ties,
  which equals the trapezoidal ROC area with tied thresholds grouped.

  Args:
    labels: [N] in {0, 1} (1 = positive / anomalous).
    scores: [N] higher = more positive.
  Raises:
    ValueError: if only one class is present (AUC undefined).
  """
  y, s = _binary_inputs(labels, scores)
  n_pos = int(y.sum())
  n_neg = y.size - n_pos
  if n_pos == 0 or n_neg == 0:
    raise ValueError(
        "roc_auc is undefined when only one class is present in labels "
        f"(got {n_pos} positives and {n_neg} negatives)")
  r = _average_ranks(s)
  u = r[y].sum() - n_pos * (n_pos + 1) / 2.0
  return float(u / (n_pos * n_neg))


def average_precision(labels, scores) -> float:
  """Average precision, sklearn's definition (average_precision_score).

  AP = sum_n (R_n - R_{n-1}) * P_n over distinct score thresholds in
  decreasing order (tied scores form one threshold), R_0 = 0. This is the
  step-wise sum, NOT the trapezoidal area under the PR curve.

  Args:
    labels: [N] in {0, 1}.
    scores: [N] higher = more positive.
  Raises:
    ValueError: if there is no positive label (recall undefined).
  """
  y, s = _binary_inputs(labels, scores)
  n_pos = int(y.sum())
  if n_pos == 0:
    raise ValueError("average_precision is undefined without positive labels")
  order = np.argsort(-s, kind="mergesort")
  ss, yy = s[order], y[order]
  # Last index of each group of tied scores.
  last = np.r_[np.flatnonzero(ss[1:] != ss[:-1]), ss.size - 1]
  tps = np.cumsum(yy)[last].astype(np.float64)
  precision = tps / (last + 1.0)
  recall = tps / n_pos
  return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def pr_auc_trapezoid(labels, scores) -> float:
  """Trapezoidal area under the precision-recall curve: sklearn's
  auc(recall, precision) of precision_recall_curve, which is how the RTFM / XD-Violence code
  reports "AP". The curve's points are the distinct score thresholds in decreasing order up to
  the first that reaches full recall, plus (recall 0, precision 1). It differs from
  `average_precision` (step-wise) by the linear interpolation between points.
  """
  y, s = _binary_inputs(labels, scores)
  n_pos = int(y.sum())
  if n_pos == 0:
    raise ValueError("pr_auc_trapezoid is undefined without positive labels")
  order = np.argsort(-s, kind="mergesort")
  ss, yy = s[order], y[order]
  last = np.r_[np.flatnonzero(ss[1:] != ss[:-1]), ss.size - 1]
  tps = np.cumsum(yy)[last].astype(np.float64)
  keep = tps.searchsorted(tps[-1]) + 1          # up to the first threshold with full recall
  precision = np.r_[1.0, tps[:keep] / (last[:keep] + 1.0)]
  recall = np.r_[0.0, tps[:keep] / n_pos]
  return float(np.sum(np.diff(recall) * (precision[1:] + precision[:-1]) / 2))


def confusion_matrix(labels, preds, num_classes: int) -> np.ndarray:
  """[C, C] int64 counts; rows = true class, columns = predicted class."""
  y = np.asarray(labels).ravel().astype(np.int64)
  p = np.asarray(preds).ravel().astype(np.int64)
  if y.shape != p.shape:
    raise ValueError(f"labels and preds differ in length: {y.shape[0]} vs {p.shape[0]}")
  c = int(num_classes)
  for name, a in (("labels", y), ("preds", p)):
    if a.size and (a.min() < 0 or a.max() >= c):
      raise ValueError(f"{name} must lie in [0, {c})")
  return np.bincount(y * c + p, minlength=c * c).reshape(c, c).astype(np.int64)


def per_class_accuracy(cm) -> np.ndarray:
  """[C] recall per true class, diag / row sum; nan for classes absent from labels."""
  cm = np.asarray(cm, dtype=np.float64)
  rows = cm.sum(axis=1)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(rows > 0, np.diag(cm) / rows, np.nan)
