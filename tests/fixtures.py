"""Small fixture trees in the exact published layouts, rendered by the built-in synthetic
generator (so the content is learnable): UCF-Crime videos + split and annotation files, the
Kaggle UCF-Crime PNG frames, RWF-2000; plus helpers that damage files."""

import os

import numpy as np

from vad_jax.classes import CLASS_INDEX, NUM_CLASSES
from vad_jax.data import video
from vad_jax.data.synthetic import SyntheticSpec, SyntheticVideos

DEFAULT_CLASSES = {'Normal': 3, 'Fighting': 2, 'Explosion': 2}


def _render(cls: str, split: str, index: int, num_frames: int, size, seed: int) -> dict:
  probs = np.zeros(NUM_CLASSES)
  probs[CLASS_INDEX[cls]] = 1.0
  window = (max(2, num_frames // 4), max(3, num_frames // 2))
  spec = SyntheticSpec(height=size[0], width=size[1], num_frames=num_frames,
                       num_videos=index + 1, window=window, seed=seed,
                       class_probs=tuple(probs))
  return SyntheticVideos(spec, split)[index]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
  """1-based inclusive (start, end) of each run of ones."""
  edges = np.flatnonzero(np.diff(np.r_[0, mask, 0]))
  return [(int(a) + 1, int(b)) for a, b in zip(edges[::2], edges[1::2])]


def ucf_crime_tree(root, *, videos_per_class=None, num_frames=48, size=(32, 32), fps=30.0,
                   seed=0, nesting='UCF_Crimes', mp4_suffix_in_annotation=True) -> dict:
  """UCF-Crime as its archive extracts: <nesting>/Videos/<Class>/<Name>_x264.mp4 (normal videos
  under Training_/Testing_Normal_Videos_Anomaly/), Anomaly_Train.txt, Anomaly_Test.txt and the
  two-space separated temporal annotation. -> {'names', 'train', 'test', 'masks' (test: uint8
  per source frame)}."""
  per_class = videos_per_class or DEFAULT_CLASSES
  base = os.path.join(str(root), nesting)
  out = {'names': [], 'train': [], 'test': [], 'masks': {}}
  train_lines, test_lines, notes = [], [], []
  for split in ('train', 'test'):
    k = 0
    for cls, n in per_class.items():
      for i in range(n):
        if cls == 'Normal':
          name = (f'Normal_Videos{i + 1:03d}_x264' if split == 'train'
                  else f'Normal_Videos_{i + 1:03d}_x264')
          folder = ('Training_Normal_Videos_Anomaly' if split == 'train'
                    else 'Testing_Normal_Videos_Anomaly')
        else:
          name = f'{cls}{(i + 1) + (0 if split == "train" else 100):03d}_x264'
          folder = cls
        ex = _render(cls, split, k, num_frames, size, seed)
        k += 1
        video.write_video(os.path.join(base, 'Videos', folder, name + '.mp4'), ex['frames'], fps)
        rel = f'{folder}/{name}.mp4'
        out['names'].append(name)
        out[split].append(name)
        if split == 'train':
          train_lines.append(rel)
        else:
          test_lines.append(rel)
          out['masks'][name] = ex['mask'].astype(np.uint8)
          pairs = _runs(ex['mask'])[:2]
          pairs += [(-1, -1)] * (2 - len(pairs))
          shown = name + ('.mp4' if mp4_suffix_in_annotation else '')
          notes.append('  '.join([shown, cls] + [str(v) for p in pairs for v in p]))
  for fname, lines in (('Anomaly_Train.txt', train_lines), ('Anomaly_Test.txt', test_lines),
                       ('Temporal_Anomaly_Annotation_for_Testing_Videos.txt', notes)):
    with open(os.path.join(base, fname), 'w') as f:
      f.write('\n'.join(lines) + '\n')
  return out


def kaggle_frames_tree(root, *, videos_per_class=None, num_frames=40, seed=0) -> dict:
  """The Kaggle release: Train|Test/<Class>/<Video>_x264_<n>.png, 64x64, every 10th frame
  (n = 0, 10, 20, ...), normal folder NormalVideos."""
  per_class = videos_per_class or {'Normal': 2, 'Fighting': 2}
  from PIL import Image
  out = {'train': [], 'test': []}
  for split, folder in (('train', 'Train'), ('test', 'Test')):
    k = 0
    for cls, n in per_class.items():
      for i in range(n):
        ex = _render(cls, split, k, num_frames, (64, 64), seed)
        k += 1
        name = (f'Normal_Videos_{split}{i:03d}_x264' if cls == 'Normal'
                else f'{cls}{i + (0 if split == "train" else 100):03d}_x264')
        d = os.path.join(str(root), folder, 'NormalVideos' if cls == 'Normal' else cls)
        os.makedirs(d, exist_ok=True)
        for f in range(0, num_frames, 10):
          Image.fromarray(ex['frames'][f]).save(os.path.join(d, f'{name}_{f}.png'))
        out[split].append(name)
  return out


def rwf2000_tree(root, *, per_class=3, num_frames=30, size=(32, 32), seed=0) -> dict:
  """RWF-2000/train|val/Fight|NonFight/<name>.avi (MPEG-4): Fight = synthetic Fighting videos,
  NonFight = Normal ones."""
  out = {'train': [], 'test': []}
  for split, folder in (('train', 'train'), ('test', 'val')):
    k = 0
    for cls, sub in (('Fighting', 'Fight'), ('Normal', 'NonFight')):
      for i in range(per_class):
        ex = _render(cls, split, k, num_frames, size, seed)
        k += 1
        name = f'{sub}_{folder}_{i:03d}'
        video.write_video(os.path.join(str(root), 'RWF-2000', folder, sub, name + '.avi'),
                          ex['frames'], 30.0, codec='mpeg4')
        out[split].append(name)
  return out


def truncate_file(path, fraction: float) -> None:
  with open(path, 'rb') as f:
    data = f.read()
  with open(path, 'wb') as f:
    f.write(data[:int(len(data) * fraction)])


def write_garbage(path) -> None:
  with open(path, 'wb') as f:
    f.write(np.random.default_rng(0).bytes(4096))
