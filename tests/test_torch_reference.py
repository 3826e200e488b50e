"""benchmarks/torch_hybrid.py (the PyTorch side of benchmarks/side_by_side.py) is vad_jax's hybrid:
the same parameter count per part at the full config, the same outputs with vad_jax's weights
copied in, the same loss on the same outputs. Skipped where torch is not installed (CI: it is
only the optional `bench` extra)."""

import dataclasses
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'benchmarks'))
import torch_hybrid as th  # noqa: E402

from configs import hybrid as hybrid_config  # noqa: E402
from vad_jax import classes, systems  # noqa: E402
from vad_jax.data.source import DataInfo  # noqa: E402
from vad_jax.models import efficientnet, hybrid  # noqa: E402


def system_of(config, height=32, width=32):
  n = systems.get('hybrid').train_frames(config)
  spec = {'video': jax.ShapeDtypeStruct((n, height, width, 3), jnp.uint8),
          'label': jax.ShapeDtypeStruct((), jnp.int32)}
  return systems.get('hybrid').from_config(config, DataInfo(classes.CLASS_NAMES,
                                                            np.arange(1, 15), spec))


def jax_counts(system, video_shape) -> dict:
  """Parameters per part, from jax.eval_shape of the system's init (nothing is computed)."""
  spec = {'video': jax.ShapeDtypeStruct(video_shape, jnp.uint8)}
  params = jax.eval_shape(system.init, jax.random.key(0), spec)['params']
  n = {k: efficientnet.count_params(v) for k, v in params.items()}
  return {'trunk': n['trunk'], 'temporal': n['bilstm'] + n['transformer'],
          'heads': n['regression'] + n['classification'] + n['vae']}


def test_constants_are_vad_jax_s():
  assert th.BLOCKS_B0 == efficientnet.BLOCKS_B0 and th.SE_RATIO == efficientnet.SE_RATIO
  assert (th.IMAGENET_MEAN, th.IMAGENET_STD) == (efficientnet.IMAGENET_MEAN,
                                                 efficientnet.IMAGENET_STD)
  assert th.NORMAL == classes.NORMAL
  for w in (0.1, 0.25, 1.0, 1.4):
    assert [th.round_filters(f, w) for f in (16, 32, 320, 1280)] == [
        efficientnet.round_filters(f, w) for f in (16, 32, 320, 1280)]
  np.testing.assert_array_equal(th.target_projection(40, 8), hybrid.target_projection(40, 8))


def test_full_config_parameter_counts_match(monkeypatch):
  # The regression targets' projection is a constant (no parameter): skip its 1280^2 QR.
  monkeypatch.setattr(hybrid, 'target_projection', lambda i, o, seed=0: np.zeros((i, o), np.float32))
  config = hybrid_config.get_config()
  config.model.trunk.depthwise_impl = 'xla'      # the same parameters, fewer ops to trace
  system = system_of(config)
  want = jax_counts(system, (1, config.data.clip_len + config.model.horizon, 32, 32, 3))
  with torch.device('meta'):                     # shapes only: no initialisation
    model = th.HybridDetector(**th.model_kwargs(config))
  got = {k: th.count_params(m) for k, m in model.parts().items()}
  assert got == want, (got, want)
  assert want == {'trunk': 4_007_548, 'temporal': 8_930_304, 'heads': 686_734}


def test_same_outputs_and_loss_with_vad_jax_weights():
  config = hybrid_config.get_config('tiny')      # width / depth 0.1, 2 BiLSTM layers
  config.model.trunk.frozen_stages = 0
  system = system_of(config)
  n = systems.get('hybrid').train_frames(config)
  video = np.random.default_rng(0).integers(0, 256, (3, n, 32, 32, 3)).astype(np.uint8)
  rng = np.random.default_rng(1)                 # numpy draws: no init to compile
  variables = jax.eval_shape(system.init, jax.random.key(0), {'video': jax.ShapeDtypeStruct(
      video.shape, jnp.uint8)})
  variables = jax.tree.map(lambda s: 0.3 * rng.standard_normal(s.shape).astype(np.float32),
                           variables)
  variables['batch_stats'] = jax.tree.map(lambda a: np.abs(a) + 0.5, variables['batch_stats'])
  fast = dict(compiler_options={'xla_backend_optimization_level': 0})   # compiles in 1/3 the time
  want = jax.jit(lambda v, x: system.model.apply(v, x, train=False), **fast)(variables, video)

  model = th.HybridDetector(**th.model_kwargs(config)).eval()
  th.load_flax(model, variables['params'], variables['batch_stats'])
  with torch.no_grad():
    got = model(torch.from_numpy(video))
  assert sorted(got) == sorted(want)
  for k in want:
    np.testing.assert_allclose(got[k].numpy(), want[k], rtol=1e-4, atol=2e-5, err_msg=k)

  # The loss, on vad_jax's outputs: anomalous and normal bags (MIL pairs, witnesses).
  label = np.array([classes.NORMAL, 3, 5], np.int32)

  @dataclasses.dataclass(frozen=True)
  class Fixed:                                   # a model whose outputs are `want`
    clip_len: int
    horizon: int

    def apply(self, *args, **kwargs):
      return want, {}

  fixed = dataclasses.replace(system, model=Fixed(config.data.clip_len, config.model.horizon))
  loss, (metrics, _) = jax.jit(lambda batch: fixed.loss(None, batch, jax.random.key(0)), **fast)(
      {'video': video, 'label': label})
  total, parts = th.hybrid_loss({k: torch.tensor(np.asarray(v)) for k, v in want.items()},
                                torch.from_numpy(label).long(), system.alpha, n,
                                config.data.clip_len, config.model.horizon,
                                **th.loss_kwargs(config))
  np.testing.assert_allclose(float(total), float(loss), rtol=1e-5)
  for k, v in parts.items():
    np.testing.assert_allclose(float(v), float(metrics[k]), rtol=1e-5, err_msg=k)
