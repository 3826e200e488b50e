"""Linear baseline of a violence feature set: how much a time-averaged feature already tells.

  python benchmarks/feature_baseline.py --lists=TRAIN_CSV,VALIDATION_CSV,TEST_CSV
  python benchmarks/feature_baseline.py --lists=CACHE_KEY_DIR   # has {train,validation,test}.csv
  python benchmarks/feature_baseline.py --config=configs/violence.py:local --seeds=0,1,2

Each video's features are averaged over all its T vectors (--pool=meanmax: mean and max
concatenated), standardised (training statistics), and a logistic regression
(class_weight='balanced') is fitted; C is chosen from {0.01, 0.1, 1, 10, 100} by validation
balanced accuracy. Prints validation and test balanced
accuracy, per-class accuracy, the Violent (last) class's ROC-AUC and the chosen C. With
--config, the built-in synthetic feature set of each seed is built (or reused) first and timed,
next to a reference (rendering 100 videos) that shows how busy the machine was.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/

from absl import app, flags, logging
from ml_collections import config_flags

_LISTS = flags.DEFINE_list('lists', [], 'train,validation,test list files, or one directory '
                           'holding train.csv, validation.csv and test.csv.')
_CONFIG = config_flags.DEFINE_config_file('config', None, 'A violence config (built-in set).')
_SEEDS = flags.DEFINE_list('seeds', ['0'], 'Data seeds of the built-in set (with --config).')
_CLASSES = flags.DEFINE_list('class_names', ['NonViolent', 'Violent'], 'Label vocabulary.')
_POOL = flags.DEFINE_enum('pool', 'mean', ['mean', 'meanmax'], "How a video's vectors are "
                          "pooled over time: 'mean', or 'meanmax' (mean and max concatenated).")
CS = (0.01, 0.1, 1.0, 10.0, 100.0)


def _pooled(list_path, class_names, pool='mean'):
  import numpy as np
  from vad_jax.data.features import FeatureSequences
  src = FeatureSequences(list_path, tuple(class_names), clip_len=1)
  feats = (src[i]['features'] for i in range(len(src)))
  x = np.stack([np.concatenate([f.mean(0)] + ([f.max(0)] if pool == 'meanmax' else []))
                for f in feats])
  return x, src.labels()


def _scores(model, x, y, n_classes):
  import numpy as np
  from sklearn.metrics import balanced_accuracy_score, roc_auc_score
  pred = model.predict(x)
  per_class = [float(np.mean(pred[y == c] == c)) if np.any(y == c) else float('nan')
               for c in range(n_classes)]
  pos = y == n_classes - 1
  auc = (float(roc_auc_score(pos, model.predict_proba(x)[:, -1])) if 0 < pos.sum() < len(y)
         else float('nan'))
  return {'balanced_accuracy': float(balanced_accuracy_score(y, pred)), 'per_class': per_class,
          'auc': auc, 'pred': pred, 'y': y}


def evaluate(lists, class_names, pool='mean') -> dict:
  """{'C', 'validation': scores, 'test': scores} of the time-pooled logistic baseline."""
  from sklearn.linear_model import LogisticRegression
  from sklearn.preprocessing import StandardScaler
  data = {s: _pooled(p, class_names, pool) for s, p in zip(('train', 'validation', 'test'), lists)}
  scaler = StandardScaler().fit(data['train'][0])
  x = {s: scaler.transform(v[0]) for s, v in data.items()}
  y = {s: v[1] for s, v in data.items()}
  best = None
  for c in CS:
    model = LogisticRegression(C=c, class_weight='balanced', max_iter=5000).fit(x['train'],
                                                                                y['train'])
    val = _scores(model, x['validation'], y['validation'], len(class_names))
    if best is None or val['balanced_accuracy'] > best[1]['balanced_accuracy']:
      best = (c, val, model)
  c, val, model = best
  return {'C': c, 'validation': val, 'test': _scores(model, x['test'], y['test'], len(class_names))}


def _print(name, r, class_names, source_labels=None):
  import numpy as np
  per = ', '.join(f'{n} {a:.3f}' for n, a in zip(class_names, r['per_class']))
  print(f'  {name:10s} balanced acc {r["balanced_accuracy"]:.3f}  ROC-AUC({class_names[-1]}) '
        f'{r["auc"]:.3f}  per class: {per}')
  if source_labels is not None:          # built-in sets: accuracy by synthetic class
    from vad_jax.classes import CLASS_NAMES
    right = r['pred'] == r['y']
    print('    by synthetic class: ' + ', '.join(
        f'{CLASS_NAMES[c]} {right[source_labels == c].mean():.2f}'
        for c in np.unique(source_labels)))


def report(lists, class_names) -> dict:
  import numpy as np
  r = evaluate(lists, class_names, _POOL.value)
  print(f'lists: {", ".join(lists)}\n  pooling {_POOL.value}, chosen C = {r["C"]}')
  src = os.path.join(os.path.dirname(lists[-1]), 'source_labels.npz')
  for split in ('validation', 'test'):
    sl = np.load(src)[split] if os.path.isfile(src) else None
    _print(split, r[split], class_names, sl)
  return r


def _reference_seconds() -> float:
  """Seconds to render 100 built-in 64-frame 32x32 videos (how busy the machine is)."""
  from vad_jax.data.synthetic import SyntheticSpec, SyntheticVideos
  ds = SyntheticVideos(SyntheticSpec(height=32, width=32, num_frames=64, num_videos=100), 'test')
  t = time.perf_counter()
  for i in range(100):
    ds[i]
  return time.perf_counter() - t


def main(argv):
  del argv
  import numpy as np
  class_names = tuple(_CLASSES.value)
  if _CONFIG.value is not None:
    from vad_jax.extract.synthetic import synthetic_feature_lists
    d = _CONFIG.value.data
    rows = []
    for seed in (int(s) for s in _SEEDS.value):
      ref = _reference_seconds()
      t = time.perf_counter()
      lists = synthetic_feature_lists(d, seed, d.extractor, d.cache_dir)
      took = time.perf_counter() - t
      print(f'seed {seed}: features ready in {took:.1f} s (reference: 100 renders in {ref:.2f} s)')
      r = report([lists[s] for s in ('train', 'validation', 'test')], class_names)
      rows.append((r['validation']['balanced_accuracy'], r['test']['balanced_accuracy'],
                   r['test']['auc']))
    m, s = np.mean(rows, 0), np.std(rows, 0)
    print(f'mean +- std over seeds: validation {m[0]:.3f} +- {s[0]:.3f}, test {m[1]:.3f} +- '
          f'{s[1]:.3f}, test ROC-AUC {m[2]:.3f} +- {s[2]:.3f}')
    return
  lists = list(_LISTS.value)
  if len(lists) == 1 and os.path.isdir(lists[0]):
    lists = [os.path.join(lists[0], f'{s}.csv') for s in ('train', 'validation', 'test')]
  if len(lists) != 3:
    raise app.UsageError('--lists takes 3 list files (train, validation, test) or 1 directory; '
                         'or give --config')
  report(lists, class_names)


if __name__ == '__main__':
  logging.set_verbosity(logging.INFO)
  app.run(main)
