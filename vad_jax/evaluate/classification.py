"""The `classification` evaluator: one prediction per example (video or clip).

Needs `predict` to give 'logits' [B, C]. Reports accuracy, balanced accuracy (mean per-class
recall), macro F1, per-class accuracy and the largest gap between two classes' accuracies
(`per_class_gap`, what seed 003's monitor watches), the confusion matrix, and ROC-AUC / AP of
the positive class (score = its softmax probability; `positive_class=None`: none) and, with
`normal_class`, `anomaly_auc` / `anomaly_ap` of anomalous vs normal examples scored 1 - p(normal)
(a many-class classifier used as a detector); saves every example's probabilities
(`predictions_<split>.npz`) and a confusion-matrix PNG. With `normal_class`, the best
checkpoint's validation outputs include `alert_threshold.json` (vad_jax.evaluate.alert): the
1 - `alert_false_alarm_rate` quantile of the validation normal examples' 1 - p(normal), the
threshold `python -m vad_jax.score` alerts at (a frame classifier's examples are frames).
"""


import numpy as np

from vad_jax import storage
from vad_jax.evaluate import alert, metrics, plots


def softmax(logits: np.ndarray) -> np.ndarray:
  z = logits - logits.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def summarize(labels: np.ndarray, probs: np.ndarray, class_names, positive: int | None,
              normal: int | None = None) -> dict:
  """Metrics of predictions argmax(probs) against labels, JSON-ready."""
  c = len(class_names)
  pred = probs.argmax(-1)
  cm = metrics.confusion_matrix(labels, pred, c)
  recall = metrics.per_class_accuracy(cm)
  with np.errstate(invalid='ignore', divide='ignore'):
    precision = np.where(cm.sum(0) > 0, np.diag(cm) / cm.sum(0), 0.0)
    f1 = np.where(precision + np.nan_to_num(recall) > 0,
                  2 * precision * recall / (precision + recall), 0.0)
  present = ~np.isnan(recall)
  out = {
      'accuracy': float(np.trace(cm) / max(cm.sum(), 1)),
      'balanced_accuracy': float(np.mean(recall[present])),
      'macro_f1': float(np.mean(f1[present])),
      'per_class_accuracy': {n: (None if np.isnan(a) else float(a))
                             for n, a in zip(class_names, recall)},
      'per_class_gap': float(recall[present].max() - recall[present].min()),
      'confusion_matrix': cm.tolist(),
      'num_examples': int(len(labels)),
  }
  if positive is not None:
    out['positive_class'] = class_names[positive]
    y = (labels == positive).astype(np.int32)
    if 0 < y.sum() < len(y):
      out['roc_auc'] = metrics.roc_auc(y, probs[:, positive])
      out['ap'] = metrics.average_precision(y, probs[:, positive])
  if normal is not None:
    y = (labels != normal).astype(np.int32)
    if 0 < y.sum() < len(y):
      out['anomaly_auc'] = metrics.roc_auc(y, 1.0 - probs[:, normal])
      out['anomaly_ap'] = metrics.average_precision(y, 1.0 - probs[:, normal])
  return out


class Classification:
  """Evaluator (vad_jax.evaluate.evaluators). Logged scalars: accuracy, balanced_accuracy,
  macro_f1, per_class_gap, roc_auc and each class's accuracy."""

  def __init__(self, config, class_names, positive_class: int | None = 1,
               normal_class: int | None = None, require_all_classes: bool = True,
               alert_false_alarm_rate: float = 0.05):
    del config
    self.alert_far = alert.check_rate(alert_false_alarm_rate)
    self.require_all_classes = require_all_classes
    self.class_names = tuple(class_names)
    self.positive = positive_class
    self.normal = normal_class
    self.scalars = ('accuracy', 'balanced_accuracy', 'macro_f1', 'per_class_gap', 'roc_auc',
                    'anomaly_auc')

  def check_split(self, labels: np.ndarray, split: str) -> None:
    missing = [n for c, n in enumerate(self.class_names) if not np.any(labels == c)]
    if missing and self.require_all_classes:
      raise ValueError(f'the {split} split ({len(labels)} examples) has no example of '
                       f'{missing}: per-class accuracy is undefined; give it more examples')

  def evaluate(self, rows: dict):
    logits = np.asarray(rows['out/logits'], np.float64)
    if logits.ndim != 2:
      raise ValueError(f"classification needs 'logits' [N, C] from predict, got {logits.shape}")
    probs = softmax(logits)
    results = summarize(rows['label'], probs, self.class_names, self.positive, self.normal)
    results.update({f'accuracy_{n}': a for n, a in results['per_class_accuracy'].items()
                    if a is not None})
    saved = {'index': rows['index'], 'label': rows['label'], 'probs': probs.astype(np.float32)}
    return results, saved

  def definitions(self, config) -> dict:
    del config
    return {'balanced_accuracy_definition': 'mean over classes of per-class recall',
            'per_class_gap_definition': 'max - min per-class accuracy (recall)',
            'ap_definition': 'sklearn average_precision_score (step-wise, no interpolation)',
            **({'anomaly_auc_definition': f'ROC-AUC of label != {self.class_names[self.normal]} '
                                          f'scored 1 - p({self.class_names[self.normal]})'}
               if self.normal is not None else {})}

  def alert_threshold(self, saved: dict) -> dict:
    """The anomaly score 1 - p(normal) above which `alert_false_alarm_rate` of the split's
    examples labelled normal lie (from the saved float32 probabilities [N, C])."""
    name = self.class_names[self.normal]
    keep = np.asarray(saved['label']) == self.normal
    normal = 1.0 - np.asarray(saved['probs'], np.float64)[keep, self.normal]
    return alert.threshold(normal, self.alert_far, f'anomaly scores 1 - p({name}) of the '
                           f'validation examples labelled {name}', 'examples')

  def write(self, saved: dict, results: dict, workdir: str, split: str,
            source=None) -> None:
    if split == 'validation' and self.normal is not None:
      alert.write(workdir, self.alert_threshold(saved))
    storage.save_npz(storage.join(workdir, f'predictions_{split}.npz'),
                     class_names=np.array(self.class_names), **saved)
    plots.plot_confusion(np.array(results['confusion_matrix']),
                         storage.join(workdir, f'{split}_confusion.png'), self.class_names,
                         'confusion matrix')
