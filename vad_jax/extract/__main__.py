"""python -m vad_jax.extract --config=configs/<x>.py:<variant> --data_dir=OUT --out=DIR
       [--extractor=descriptor|keras:FILE.h5|run:WORKDIR] [--snippet=16] [--crops=1|10]
       [--batch_frames=256] [--overwrite]

Features of a dataset prepared by `python -m vad_jax.prepare` (the config names it: data.dataset,
fps, height, width, val_fraction, split_seed), in the RTFM layout plus CSV lists and the
per-frame ground truth (vad_jax.extract.prepared), so feature-based methods - and
configs/hybrid.py:features - can train on a user's own videos.
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from vad_jax.classes import CLASS_NAMES

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config naming the prepared dataset.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'the prepare command\'s --data_dir '
                                '(default: config.data.data_dir)')
_OUT = flags.DEFINE_string('out', None, 'output folder (must not exist, or be empty)')
_EXTRACTOR = flags.DEFINE_string('extractor', 'descriptor',
                                 'descriptor | keras:<EfficientNet .h5> | run:<hybrid workdir>')
_SNIPPET = flags.DEFINE_integer('snippet', 16, 'frames a feature vector (16: I3D-style snippets)')
_CROPS = flags.DEFINE_enum('crops', '1', ['1', '10'], '1, or 10 crops (corners, centre, flips)')
_BATCH = flags.DEFINE_integer('batch_frames', 256, 'frames a trunk call (keras:/run: extractors)')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'replace an existing --out')
flags.mark_flags_as_required(['config', 'out'])


def main(argv):
  from vad_jax.host_memory import keep_freed_memory
  keep_freed_memory()              # XLA:CPU reuses its buffers (vad_jax/host_memory.py)
  del argv
  from vad_jax.data.sources import prepare_spec
  from vad_jax.extract.prepared import extract
  config = _CONFIG.value
  data_dir = _DATA_DIR.value or config.data.get('data_dir', '')
  if not data_dir:
    raise app.UsageError('give --data_dir (the prepare command\'s output)')
  spec = prepare_spec(config)
  try:
    meta = extract(data_dir, spec, _EXTRACTOR.value, _OUT.value, snippet=_SNIPPET.value,
                   crops=int(_CROPS.value), batch_frames=_BATCH.value,
                   overwrite=_OVERWRITE.value)
  except (FileNotFoundError, FileExistsError, ValueError) as e:   # not prepared, out taken, ...
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  out = os.path.abspath(_OUT.value)
  shape = '[T, F]' if meta['crops'] == 1 else f'[T, {meta["crops"]}, F]'
  print(f'wrote {shape} features (F = {meta["feature_dim"]}, {meta["snippet"]} frames a '
        f'snippet) of {spec.name} to {out}:')
  for split, s in meta['splits'].items():
    print(f'  {split}: {s["videos"]} videos {s["classes"]}, {s["snippets"]} snippets -> '
          f'{out}/{split}.list, {out}/{split}.csv' + (f', {out}/gt-{split}.npy' if s['gt'] else ''))
  splits = meta['splits']
  if not ('train' in splits and 'test' in splits):
    return
  if tuple(meta['class_names']) == CLASS_NAMES:           # UCF-Crime: the hybrid's classes
    gt = f' --config.data.gt={out}/gt-test.npy' if splits['test']['gt'] else ''
    print(f'train the hybrid on them (:features_local on a CPU):\n'
          f'  python -m vad_jax.main --config=configs/hybrid.py:features '
          f'--config.data.train_list={out}/train.list --config.data.test_list={out}/test.list'
          f'{gt} --config.data.snippet_frames={meta["snippet"]} --workdir=RUN')
  elif len(meta['class_names']) == 2 and 'validation' in splits:
    print(f'train the violence detector on them (classes {tuple(meta["class_names"])}):\n'
          f'  python -m vad_jax.main --config=configs/violence.py:features '
          + ' '.join(f'--config.data.{s}_list={out}/{s}.csv'
                     for s in ('train', 'validation', 'test'))
          + f' --config.data.class_names="{tuple(meta["class_names"])}" --workdir=RUN')

if __name__ == '__main__':
  app.run(main)
