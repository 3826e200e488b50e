"""python -m vad_jax.extract --config=configs/<x>.py:<variant> --data_dir=OUT --out=DIR
       [--extractor=descriptor|keras:FILE.h5|run:WORKDIR] [--snippet=16] [--crops=1|10]

Features of a dataset prepared by `python -m vad_jax.prepare` (the config names it: data.dataset,
fps, height, width, val_fraction, split_seed), in the RTFM layout plus CSV lists and the
per-frame ground truth (vad_jax.extract.prepared), so feature-based methods - and
configs/hybrid.py:features - can train on a user's own videos.
"""

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config naming the prepared dataset.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'the prepare command\'s --data_dir '
                                '(default: config.data.data_dir)')
_OUT = flags.DEFINE_string('out', None, 'output folder (must not exist, or be empty)')
_EXTRACTOR = flags.DEFINE_string('extractor', 'descriptor',
                                 'descriptor | keras:<EfficientNet .h5> | run:<hybrid workdir>')
_SNIPPET = flags.DEFINE_integer('snippet', 16, 'frames a feature vector (16: I3D-style snippets)')
_CROPS = flags.DEFINE_enum('crops', '1', ['1', '10'], '1, or 10 crops (corners, centre, flips)')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'replace an existing --out')
flags.mark_flags_as_required(['config', 'out'])


def main(argv):
  del argv
  from vad_jax.data.sources import prepare_spec
  from vad_jax.extract.prepared import extract
  config = _CONFIG.value
  data_dir = _DATA_DIR.value or config.data.get('data_dir', '')
  if not data_dir:
    raise app.UsageError('give --data_dir (the prepare command\'s output)')
  spec = prepare_spec(config)
  meta = extract(data_dir, spec, _EXTRACTOR.value, _OUT.value, snippet=_SNIPPET.value,
                 crops=int(_CROPS.value), overwrite=_OVERWRITE.value)
  out = _OUT.value
  print(f'wrote features of {spec.name} to {out}: {meta["splits"]}')
  if 'train' in meta['splits'] and 'test' in meta['splits']:
    gt = f' --config.data.gt={out}/gt-test.npy' if meta['splits']['test']['gt'] else ''
    print(f'train the hybrid on them (:features_local on a CPU): '
          f'python -m vad_jax.main --config=configs/hybrid.py:features '
          f'--config.data.train_list={out}/train.list --config.data.test_list={out}/test.list'
          f'{gt} --config.data.snippet_frames={_SNIPPET.value} --workdir=RUN')


if __name__ == '__main__':
  app.run(main)
