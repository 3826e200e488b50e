"""Layers point one way, and the trainer names no system, model or metric."""

import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOWER = ('models', 'losses', 'data', 'evaluate', 'boxes')
UPPER = ('vad_jax.train', 'vad_jax.systems')


def imports(path):
  tree = ast.parse(open(path).read())
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      yield node.module
      yield from (f'{node.module}.{a.name}' for a in node.names)


def test_lower_layers_import_nothing_from_train_or_systems():
  bad = []
  for layer in LOWER:
    folder = os.path.join(ROOT, 'vad_jax', layer)
    for name in sorted(os.listdir(folder)):
      if name.endswith('.py'):
        for mod in imports(os.path.join(folder, name)):
          if mod.startswith(UPPER) or (layer == 'models' and mod.startswith('vad_jax.losses')):
            bad.append(f'vad_jax/{layer}/{name} imports {mod}')
  assert not bad, bad


def test_trainer_names_no_system_model_or_metric():
  """The issue's own check: git grep over vad_jax/train and vad_jax/main.py finds nothing."""
  pattern = r'frame_auc|[Ee]fficient[Nn]et|trunk|vad_jax.models|systems.hybrid'
  hits = []
  paths = [os.path.join(ROOT, 'vad_jax', 'main.py')] + [
      os.path.join(ROOT, 'vad_jax', 'train', n) for n in os.listdir(os.path.join(ROOT, 'vad_jax', 'train'))
      if n.endswith('.py')]
  for path in paths:
    for i, line in enumerate(open(path), 1):
      if re.search(pattern, line):
        hits.append(f'{os.path.relpath(path, ROOT)}:{i}: {line.strip()}')
  assert not hits, hits
