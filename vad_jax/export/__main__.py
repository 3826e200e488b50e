"""python -m vad_jax.export --workdir=RUN --out=FILE [--length=N] [--platforms=cpu,cuda,tpu]

Serialises the run's predict function (vad_jax.export.serialize); run it anywhere with only jax
and numpy: python vad_jax/export/standalone.py FILE INPUT.npy.
"""

import argparse
import sys


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog='python -m vad_jax.export', description=__doc__.split('\n')[0])
  p.add_argument('--workdir', required=True, help='a trained run')
  p.add_argument('--out', required=True, help='the file to write (and FILE.json beside it)')
  p.add_argument('--length', type=int, default=None,
                 help='time steps of a sequence input (default: a training example\'s)')
  p.add_argument('--platforms', default='',
                 help='comma-separated lowering platforms (default: cpu and this backend)')
  args = p.parse_args(argv)
  from vad_jax.export.serialize import export_run
  try:
    meta = export_run(args.workdir, args.out, args.length,
                      tuple(x for x in args.platforms.split(',') if x) or None)
  except (FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  i = meta['input']
  print(f"exported {meta['system']} (checkpoint {meta['checkpoint_step']}) for "
        f"{','.join(meta['platforms'])}: {i['name']} {i['shape']} {i['dtype']} -> "
        + ', '.join(f"{k} {v['shape']}" for k, v in meta['outputs'].items())
        + f'; {args.out} (+ .json)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
