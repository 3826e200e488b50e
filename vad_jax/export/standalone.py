"""Runs an exported vad_jax model with only jax and numpy (no vad_jax, flax or optax needed).

  python standalone.py MODEL INPUT.npy [--out OUT.npz]

MODEL is written by `python -m vad_jax.export` (MODEL.json beside it says the input: name,
shape with 'b' the batch, dtype). INPUT.npy holds one example (the input shape without 'b') or
a batch; the outputs are saved to OUT.npz (default: INPUT.outputs.npz) and summarised.
"""

import argparse
import json
import sys

import jax
import numpy as np


def load(path: str):
  """-> (callable x -> {name: array}, metadata dict)."""
  with open(path, 'rb') as f:
    exported = jax.export.deserialize(bytearray(f.read()))
  with open(path + '.json') as f:
    meta = json.load(f)
  return exported.call, meta


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('model')
  p.add_argument('input', help='a .npy of one example or a batch')
  p.add_argument('--out', default=None)
  args = p.parse_args(argv)
  call, meta = load(args.model)
  spec = meta['input']
  x = np.load(args.input)
  want = spec['shape'][1:]
  if list(x.shape) == want:
    x = x[None]
  if list(x.shape[1:]) != want:
    print(f"error: {args.input} has shape {x.shape}; the model takes {spec['name']} "
          f"{spec['shape']}", file=sys.stderr)
    return 2
  out = {k: np.asarray(v) for k, v in call(x.astype(spec['dtype'])).items()}
  path = args.out or args.input.rsplit('.', 1)[0] + '.outputs.npz'
  np.savez(path, **out)
  print(f"{meta['system']} on {x.shape[0]} example(s): "
        + ', '.join(f'{k} {v.shape}' for k, v in out.items()) + f'; saved {path}')
  for k in ('score', 'scores'):
    if k in out:
      print(f'{k}: mean {out[k].mean():.4f}, max {out[k].max():.4f}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
