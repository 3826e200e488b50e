"""python -m vad_jax.prepare DATASET --manual_dir=RAW --data_dir=OUT [--fps= --height= --width=]

DATASET: ucf_crime (videos + split and annotation files), ucf_crime_frames (the Kaggle PNG
release), rwf2000. RAW is the dataset as extracted from its archive (files are found by name at
any depth). Resumable: rerun the same command after an interruption. Prints the config
overrides that read the result.
"""

import os

from absl import app, flags, logging

from vad_jax.prepare import builder, raw

# Per dataset: (fps, height, width) when not given. UCF-Crime at 10 fps keeps every third frame
# of its 30 fps videos; the Kaggle frames are already every 10th frame at 64x64.
DEFAULTS = {'ucf_crime': (10.0, 224, 224), 'ucf_crime_frames': (0.0, 64, 64),
            'rwf2000': (10.0, 112, 112)}

FLAGS = flags.FLAGS
flags.DEFINE_string('manual_dir', None, 'the raw dataset folder (as extracted from its archive)')
flags.DEFINE_string('data_dir', None, 'where prepared datasets go')
flags.DEFINE_float('fps', None, 'frames per second kept (0 = every frame); default per dataset')
flags.DEFINE_integer('height', None, 'frame height after resizing; default per dataset')
flags.DEFINE_integer('width', None, 'frame width after resizing; default per dataset')
flags.DEFINE_float('val_fraction', 0.1, 'training videos carved into the validation split, per '
                   'class (seeded)')
flags.DEFINE_integer('seed', 0, 'seed of the validation carve')
flags.DEFINE_integer('workers', None, 'decoding processes (default: all cores)')
flags.DEFINE_enum('encoding', 'jpeg', ['jpeg', 'png'], 'how frames are stored')
flags.DEFINE_integer('quality', 90, 'JPEG quality')
flags.DEFINE_bool('keep_work', False, 'keep the per-video decoded files after success')
flags.mark_flags_as_required(['manual_dir', 'data_dir'])


def main(argv):
  if len(argv) != 2:
    raise app.UsageError(f'give one DATASET: {sorted(raw.DATASETS)}')
  dataset = argv[1]
  if dataset not in raw.DATASETS:
    raise app.UsageError(f'unknown DATASET {dataset!r}; known: {sorted(raw.DATASETS)}')
  fps, height, width = DEFAULTS[dataset]
  fps = FLAGS.fps if FLAGS.fps is not None else fps
  spec = builder.PrepareSpec(dataset=dataset, height=FLAGS.height or height,
                             width=FLAGS.width or width, fps=fps or None,
                             val_fraction=FLAGS.val_fraction, seed=FLAGS.seed,
                             encoding=FLAGS.encoding, quality=FLAGS.quality)
  out = builder.prepare(spec, FLAGS.manual_dir, FLAGS.data_dir, FLAGS.workers, FLAGS.keep_work)
  logging.info('done: %s', out)
  print(f'prepared {spec.name} in {out}\nread it with: --config.data.data_dir='
        f'{os.path.abspath(FLAGS.data_dir)} --config.data.fps={spec.fps or 0:g} '
        f'--config.data.height={spec.height} --config.data.width={spec.width}')


if __name__ == '__main__':
  app.run(main)
