"""Dtype policy: every module takes (dtype = compute dtype, param_dtype = storage dtype)."""

import jax
import jax.numpy as jnp

_NAMES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}


def dtype_policy(model_config) -> tuple:
  """(compute dtype, param dtype) from `config.model.dtype` / `config.model.param_dtype`;
  'auto' is bfloat16 on accelerators and float32 on CPU (XLA:CPU has no fast bfloat16 path)."""
  out = []
  for key in ('dtype', 'param_dtype'):
    name = model_config[key]
    if name == 'auto':
      name = 'float32' if jax.default_backend() == 'cpu' else 'bfloat16'

    if name not in _NAMES:
      raise ValueError(f'config.model.{key}={name!r}; expected one of {sorted(_NAMES)}')
    out.append(_NAMES[name])
  return tuple(out)
