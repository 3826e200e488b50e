"""Trivial baselines on exactly the split a config trains and tests on (same source, same seed).

  python benchmarks/baselines.py --config=configs/svdd_vae.py:local [--seeds=0,1,2]
  python benchmarks/baselines.py --config=configs/multihead.py:local [--seeds=0,1,2]

Anomaly configs (a 'video' source with per-frame truth; seed 000 / 001): parameter-free frame
scores, frame ROC-AUC on the test split, computed as `frame_anomaly` does (sklearn):
  frame_difference   mean |frame_t - frame_{t-1}| over pixels (frame 0 takes frame 1's)
  foreground         mean |frame_t - median over the video's frames| (fixed-camera background)
Frame classification configs (an 'image' source; seed 002): logistic regression (sklearn,
class_weight='balanced', C chosen on the validation split by balanced accuracy) on the frame
average-pooled to 8x8x3 pixels; test accuracy, balanced accuracy, macro F1; and the majority
class (always the most frequent training class).
Prints one line per seed and the mean / spread.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_config(spec: str):
  import importlib.util
  path, _, arg = spec.partition(':')
  mod_spec = importlib.util.spec_from_file_location('cfg', path)
  mod = importlib.util.module_from_spec(mod_spec)
  mod_spec.loader.exec_module(mod)
  return mod.get_config(arg)


def anomaly_baselines(config) -> dict:
  from sklearn.metrics import roc_auc_score
  from vad_jax.data import sources
  src = sources.make(config, 'test')
  scores = {'frame_difference': [], 'foreground': []}
  labels = []
  for i in range(len(src)):
    e = src.eval_transform(src[i])
    x = e['video'].astype(np.float32)
    d = np.abs(np.diff(x, axis=0)).mean((1, 2, 3))
    scores['frame_difference'].append(np.concatenate([d[:1], d]))
    scores['foreground'].append(np.abs(x - np.median(x, axis=0)).mean((1, 2, 3)))
    labels.append(e['mask'])
  y = np.concatenate(labels)
  return {f'{k}_frame_auc': float(roc_auc_score(y, np.concatenate(v))) for k, v in scores.items()}


def pooled(src, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
  x = src.pixels().astype(np.float32) / 255.0                     # [N, H, W, 3]
  n, h, w, c = x.shape
  x = x.reshape(n, size, h // size, size, w // size, c).mean((2, 4))
  return x.reshape(n, -1), src.labels()


def classification_baselines(config) -> dict:
  from sklearn.linear_model import LogisticRegression
  from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
  from sklearn.preprocessing import StandardScaler
  from vad_jax.data import sources
  srcs = sources.make_splits(config)
  (xtr, ytr), (xva, yva), (xte, yte) = (pooled(srcs[s]) for s in sources.SPLITS)
  scale = StandardScaler().fit(xtr)
  xtr, xva, xte = scale.transform(xtr), scale.transform(xva), scale.transform(xte)
  best = None
  for c in (0.01, 0.1, 1.0, 10.0):
    clf = LogisticRegression(C=c, class_weight='balanced', max_iter=2000).fit(xtr, ytr)
    val = balanced_accuracy_score(yva, clf.predict(xva))
    if best is None or val > best[0]:
      best = (val, c, clf)
  val, c, clf = best
  pred = clf.predict(xte)
  majority = np.bincount(ytr).argmax()
  return {'majority_accuracy': float(np.mean(yte == majority)),
          'majority_balanced_accuracy': float(balanced_accuracy_score(yte, np.full_like(yte, majority))),
          'logreg_C': c, 'logreg_validation_balanced_accuracy': float(val),
          'logreg_accuracy': float(accuracy_score(yte, pred)),
          'logreg_balanced_accuracy': float(balanced_accuracy_score(yte, pred)),
          'logreg_macro_f1': float(f1_score(yte, pred, average='macro'))}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--config', required=True, help='configs/<system>.py[:variant]')
  p.add_argument('--seeds', default='0', help='comma-separated data seeds')
  args = p.parse_args()
  rows = []
  for seed in (int(s) for s in args.seeds.split(',')):
    config = load_config(args.config)
    config.seed = seed
    fn = classification_baselines if config.data.source == 'synthetic_frames' else anomaly_baselines
    r = fn(config)
    rows.append(r)
    print(f'seed {seed}: ' + '  '.join(f'{k} {v:.4f}' if isinstance(v, float) else f'{k} {v}'
                                       for k, v in r.items()), flush=True)
  if len(rows) > 1:
    for k in rows[0]:
      v = np.array([r[k] for r in rows], np.float64)
      print(f'{k}: mean {v.mean():.4f} sd {v.std(ddof=1):.4f}')


if __name__ == '__main__':
  main()
