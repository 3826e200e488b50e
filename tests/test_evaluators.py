"""Evaluators by name: the classification metrics against sklearn, files, and registry errors."""

import ml_collections
import numpy as np
import pytest
from sklearn import metrics as skm

from vad_jax.evaluate import evaluators


def config(**evals):
  return ml_collections.ConfigDict({'evals': evals, 'data': {'clip_len': 4, 'eval_stride': 2}})


def rows(n=200, c=3, seed=0):
  rng = np.random.default_rng(seed)
  label = rng.integers(0, c, n)
  logits = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[label] * rng.uniform(0, 2, (n, 1))
  return {'index': np.arange(n, dtype=np.int32), 'label': label.astype(np.int32),
          'length': np.full(n, 20, np.int32), 'out/logits': logits.astype(np.float32)}


def test_classification_matches_sklearn(tmp_path):
  names = ('Normal', 'Violent', 'Other')
  ev = evaluators.make(config(classification={'positive_class': 1}), names)['classification']
  r = rows()
  res, saved = ev.evaluate(r)
  y = r['label']
  p = np.exp(r['out/logits'] - r['out/logits'].max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  pred = p.argmax(1)
  assert res['accuracy'] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
  assert res['balanced_accuracy'] == pytest.approx(skm.balanced_accuracy_score(y, pred), abs=1e-12)
  assert res['macro_f1'] == pytest.approx(skm.f1_score(y, pred, average='macro'), abs=1e-12)
  recall = skm.recall_score(y, pred, average=None)
  assert [res['per_class_accuracy'][n] for n in names] == pytest.approx(recall, abs=1e-12)
  assert res['per_class_gap'] == pytest.approx(recall.max() - recall.min(), abs=1e-12)
  assert res['accuracy_Violent'] == pytest.approx(recall[1], abs=1e-12)
  np.testing.assert_array_equal(res['confusion_matrix'], skm.confusion_matrix(y, pred))
  assert res['roc_auc'] == pytest.approx(skm.roc_auc_score(y == 1, p[:, 1]), abs=1e-9)
  assert res['ap'] == pytest.approx(skm.average_precision_score(y == 1, p[:, 1]), abs=1e-9)
  ev.write(saved, res, str(tmp_path), 'test')
  f = np.load(tmp_path / 'predictions_test.npz')
  np.testing.assert_allclose(f['probs'], p, rtol=1e-5)
  np.testing.assert_array_equal(f['label'], y)
  assert list(f['class_names']) == list(names)
  assert (tmp_path / 'test_confusion.png').stat().st_size > 0


def test_split_checks_and_registry_errors():
  ev = evaluators.make(config(classification={}), ('a', 'b'))['classification']
  with pytest.raises(ValueError, match=r"no example of \['b'\]"):
    ev.check_split(np.zeros(5, int), 'validation')
  with pytest.raises(ValueError, match='config.evals.roc: unknown evaluator'):
    evaluators.make(config(roc={}), ('a', 'b'))
  with pytest.raises(ValueError, match='config.evals.classification: .*positive'):
    evaluators.make(config(classification={'positive': 1}), ('a', 'b'))
  with pytest.raises(ValueError, match='config.evals is empty'):
    evaluators.make(config(), ('a', 'b'))
