"""EfficientNet trunk train step on its own: frames/s, compile time, where the time goes by op.

  flock /tmp/bench.lock python benchmarks/profile_trunk.py [--size=full|local|both] [--by_op]
      [--profile=DIR] [--depthwise_impl=auto] [--conv_impl=auto] [--steps=5]

Sizes (as the hybrid runs the trunk; configs/hybrid.py):
  full   B0 (width/depth 1.0), 136 frames of 64x64x3, padding 'symmetric', drop-connect 0.2
  local  the :local trunk (width/depth 0.25), 288 frames (8 videos x 36) of 32x32x6 ('motion'
         input), bn_momentum 0.9, no drop-connect
The step is forward + backward + an optax Adam update, BatchNorm in train mode (batch statistics
updated), float32, nothing frozen, state donated like the trainer's. Timings are the median of
`--steps` steps after one warm-up step; the machine reference (best 1024x1024 float32 numpy
matmul) is printed beside them, measured in the same run, because the CPU is shared.

`--by_op`: a jax.profiler trace of 2 steps (perfetto JSON; XLA:CPU emits one event per executed
thunk, named after its HLO instruction), each event classified from the optimised HLO of the
compiled step (`compiled.as_text()`): the instruction's opcode, or for a fusion what it fuses
(a convolution, a dot (XNNPACK/YNNPACK custom fusions included), a reduce, only transposes /
copies, else elementwise). Forward / backward from the instruction's `op_name` metadata
(`transpose(jvp(...))` is backward). Thunks can overlap on the 2 cores, so the summed op time is
printed beside the wall time. `--profile=DIR` keeps the trace (TensorBoard / Perfetto) there.
"""

import collections
import gzip
import glob
import json
import os
import re
import resource
import sys
import tempfile
import time

from absl import app, flags

_SIZE = flags.DEFINE_enum('size', 'full', ['full', 'local', 'both'], 'Trunk size (see above).')
_FRAMES = flags.DEFINE_integer('frames', 0, 'Frames a step (0: the size default).')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed steps after the compile + warm-up step.')
_DW = flags.DEFINE_string('depthwise_impl', 'auto', 'EfficientNet depthwise_impl; a,b,..: '
                          'several variants, timed round-robin in one process.')
_CONV = flags.DEFINE_string('conv_impl', 'auto', 'EfficientNet conv_impl (1x1 convs, stem); '
                            'a,b,..: as --depthwise_impl.')
_MALLOC = flags.DEFINE_enum('malloc', 'keep', ['keep', 'default'], "'keep': "
                            'vad_jax.host_memory.keep_freed_memory() first (as vad_jax does)')
_BY_OP = flags.DEFINE_bool('by_op', False, 'Print the step time by HLO op kind (trace).')
_TOP = flags.DEFINE_integer('top', 15, 'With --by_op: the slowest instructions listed.')
_PROFILE = flags.DEFINE_string('profile', '', 'Write the jax.profiler trace to this directory.')
_HLO = flags.DEFINE_string('hlo', '', 'Write the optimised HLO text of the step to this file.')

SIZES = {
    # name: (width, depth, frames, hw, channels, drop_connect, bn_momentum)
    'full': (1.0, 1.0, 136, 64, 3, 0.2, 0.99),
    'local': (0.25, 0.25, 288, 32, 6, 0.0, 0.9),
}


def matmul_reference(n: int = 1024, reps: int = 5) -> float:
  """Best wall time (ms) of one n x n float32 numpy matmul: the machine's speed right now."""
  import numpy as np
  a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
  a @ a
  best = float('inf')
  for _ in range(reps):
    t0 = time.perf_counter()
    a @ a
    best = min(best, time.perf_counter() - t0)
  return best * 1e3


def build(size: str, depthwise_impl: str, conv_impl: str):
  """-> (jitted step, initial state, input batch, rng, label)."""
  import jax
  import jax.numpy as jnp
  import optax
  from vad_jax.models.efficientnet import EfficientNet

  w, d, frames, hw, ch, drop, mom = SIZES[size]
  frames = _FRAMES.value or frames
  impls = dict(depthwise_impl=depthwise_impl, conv_impl=conv_impl)
  # (only the fields this EfficientNet has: the script also profiles older checkouts)
  impls = {k: v for k, v in impls.items() if k in EfficientNet.__dataclass_fields__}
  model = EfficientNet(width_mult=w, depth_mult=d, padding='symmetric', drop_connect_rate=drop,
                       bn_momentum=mom, **impls)
  x = jax.random.normal(jax.random.PRNGKey(1), (frames, hw, hw, ch), jnp.float32)
  v = jax.jit(lambda x: model.init(jax.random.PRNGKey(0), x[:2], train=False))(x)
  tx = optax.adam(1e-3)
  state = (v['params'], v['batch_stats'], tx.init(v['params']))

  def loss_fn(params, stats, x, rng):
    y, upd = model.apply({'params': params, 'batch_stats': stats}, x, train=True,
                         rngs={'dropout': rng}, mutable=['batch_stats'])
    return jnp.mean(jnp.square(y)), upd['batch_stats']

  def step(state, x, rng):
    params, stats, opt = state
    (loss, stats), g = jax.value_and_grad(loss_fn, has_aux=True)(params, stats, x, rng)
    upd, opt = tx.update(g, opt, params)
    return (optax.apply_updates(params, upd), stats, opt), loss

  label = f'{size} (width {w} depth {d}, {frames} x {hw}x{hw}x{ch})'
  return jax.jit(step, donate_argnums=(0,)), state, x, jax.random.PRNGKey(2), label


# ----------------------------------------------------------------------------- HLO classification
_COMP = re.compile(r'^(ENTRY )?%(\S+) \(.*\{\s*$')
_INSTR = re.compile(r'^\s*(?:ROOT )?%(\S+) = (.+?) ([a-z][\w-]*)\((.*)$')


def parse_hlo(text: str) -> tuple[dict, dict]:
  """Optimised HLO text -> ({instruction: info}, {computation: [(opcode, op_name)]})."""
  instrs, comps, comp = {}, collections.defaultdict(list), None
  for line in text.splitlines():
    m = _COMP.match(line)
    if m:
      comp = m.group(2)
      continue
    m = _INSTR.match(line)
    if not m or comp is None:
      continue
    name, shape, op, rest = m.groups()
    calls = re.search(r'calls=%([\w.\-]+)', rest)
    custom = re.search(r'"kind":"(__\w+)"', rest)
    op_name = re.search(r'op_name="([^"]*)"', rest)
    instrs[name] = dict(op=op, shape=shape, calls=calls and calls.group(1),
                        custom=custom and custom.group(1), rest=rest,
                        op_name=op_name.group(1) if op_name else '')
    comps[comp].append((op, instrs[name]['op_name']))
  return instrs, comps


def classify(info: dict, comps: dict) -> str:
  """An instruction's op kind: convolution / dot / reduce / transpose-copy / elementwise ..."""
  op = info['op']
  if op == 'convolution':
    win = re.search(r'window=\{size=(\S+)', info['rest'])
    return 'convolution' if not win else f'convolution {"1x1" if win.group(1) == "1x1" else "kxk"}'
  if op != 'fusion':
    return op
  inner = {op for op, _ in comps.get(info['calls'], ())}
  if info['custom']:
    return f'dot ({info["custom"].strip("_")})' if 'dot' in inner else f'custom {info["custom"]}'
  if 'convolution' in inner:
    return 'convolution (fused)'
  if 'dot' in inner:
    return 'dot (fused)'
  if 'reduce' in inner or 'reduce-window' in inner:
    return 'reduce fusion'
  if 'scatter' in inner:
    return 'scatter fusion'
  if inner <= {'parameter', 'transpose', 'copy', 'bitcast', 'reshape', 'constant'}:
    return 'transpose/copy'
  if 'pad' in inner or 'slice' in inner or 'concatenate' in inner or 'dynamic-slice' in inner:
    return 'elementwise fusion (slice/pad)'
  return 'elementwise fusion'


def phase(info: dict, comps: dict) -> str:
  """'backward' / 'forward' from the op_name metadata (a fusion's: any of its instructions')."""
  names = [info['op_name']] + [n for _, n in comps.get(info['calls'], ())]
  if any('transpose(jvp' in n for n in names):
    return 'backward'
  if any('jvp(' in n for n in names):
    return 'forward'
  return 'other (optimizer, layout copies)'


def layer(info: dict) -> str:
  """The trunk layer an instruction belongs to, from its op_name (a fusion: its root's)."""
  m = re.search(r'/(?:block\d+|stem|head)/([^/]+)', info['op_name'])
  if m:
    return m.group(1).replace('jit(', '').rstrip(')')
  return 'other (no layer in op_name)'


def by_op(trace_dir: str, hlo_text: str, steps: int, wall_ms: float) -> None:
  """Prints time a step by op kind / phase and the slowest instructions, from a perfetto trace."""
  path = glob.glob(os.path.join(trace_dir, '**', 'perfetto_trace.json.gz'), recursive=True)
  if not path:
    print(f'no perfetto trace under {trace_dir}')
    return
  events = json.load(gzip.open(sorted(path)[-1]))
  events = events['traceEvents'] if isinstance(events, dict) else events
  instrs, comps = parse_hlo(hlo_text)
  kinds, phases, layers, per = (collections.defaultdict(lambda: [0, 0.0]) for _ in range(4))
  total = 0.0
  for e in events:
    if e.get('ph') != 'X' or e['name'] not in instrs:
      continue
    info = instrs[e['name']]
    if info['op'] in ('while', 'call', 'conditional'):   # their bodies' thunks are listed too
      continue
    dur = e.get('dur', 0.0) / 1e3 / steps     # us -> ms a step
    total += dur
    for table, key in ((kinds, classify(info, comps)), (phases, phase(info, comps)),
                       (layers, layer(info)), (per, e['name'])):
      table[key][0] += 1
      table[key][1] += dur
  print(f'  by op kind (ms a step; thunks summed {total:.0f} ms vs wall {wall_ms:.0f} ms):')
  for k, (n, t) in sorted(kinds.items(), key=lambda kv: -kv[1][1]):
    print(f'    {k:34s} {t:8.1f} ms {100 * t / total:5.1f}%  {n // steps:5d} ops')
  for title, table in (('phase', phases), ('layer (op_name)', layers)):
    print(f'  by {title}:')
    for k, (n, t) in sorted(table.items(), key=lambda kv: -kv[1][1]):
      print(f'    {k:34s} {t:8.1f} ms {100 * t / total:5.1f}%  {n // steps:5d} ops')
  print(f'  slowest {_TOP.value} instructions:')
  for k, (n, t) in sorted(per.items(), key=lambda kv: -kv[1][1])[:_TOP.value]:
    info = instrs[k]
    print(f'    {t:7.1f} ms  {k:32s} {classify(info, comps):22s} {info["shape"][:40]:40s} '
          f'{info["op_name"][-70:]}')


def run(size: str) -> None:
  """Compiles every variant, then times them round-robin (a step of each in turn), so load from
  other processes on the shared CPU falls on all of them alike."""
  import jax
  variants = [(dw, cv) for dw in _DW.value.split(',') for cv in _CONV.value.split(',')]
  ref0 = matmul_reference()
  runs = []
  for dw, cv in variants:
    step, state, x, rng, label = build(size, dw, cv)
    t0 = time.perf_counter()
    compiled = step.lower(state, x, rng).compile()
    compile_s = time.perf_counter() - t0
    hlo = compiled.as_text()
    if _HLO.value:
      with open(_HLO.value if len(variants) == 1 else f'{_HLO.value}.{size}.{dw}.{cv}', 'w') as f:
        f.write(hlo)
    state, loss = compiled(state, x, rng)      # warm-up
    jax.block_until_ready(loss)
    runs.append(dict(name=f'depthwise_impl={dw} conv_impl={cv}', compiled=compiled, state=state,
                     x=x, rng=rng, hlo=hlo, compile_s=compile_s, times=[],
                     ru=collections.Counter()))
  for _ in range(_STEPS.value):
    for r in runs:
      ru0 = resource.getrusage(resource.RUSAGE_SELF)
      t0 = time.perf_counter()
      r['state'], loss = r['compiled'](r['state'], r['x'], r['rng'])
      jax.block_until_ready(loss)
      r['times'].append(time.perf_counter() - t0)
      ru1 = resource.getrusage(resource.RUSAGE_SELF)
      for k in ('ru_utime', 'ru_stime', 'ru_minflt'):
        r['ru'][k] += (getattr(ru1, k) - getattr(ru0, k)) / _STEPS.value
  ref1 = matmul_reference()
  print(f'{label}, backend {jax.default_backend()}, XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}')
  print(f'  machine reference: 1024^2 f32 numpy matmul {ref0:.1f} ms before, {ref1:.1f} ms after')
  for r in runs:
    t = sorted(r['times'])
    dt = t[len(t) // 2]
    print(f'  {r["name"]}:')
    print(f'    compile {r["compile_s"]:.1f} s ({len(r["hlo"].splitlines())} lines of optimised HLO)')
    print(f'    step {dt * 1e3:.0f} ms (median of {len(t)}; min {t[0] * 1e3:.0f})  ->  '
          f'{r["x"].shape[0] / dt:.1f} frames/s')
    print(f'    CPU a step: user {r["ru"]["ru_utime"] * 1e3:.0f} ms, system '
          f'{r["ru"]["ru_stime"] * 1e3:.0f} ms ({r["ru"]["ru_minflt"]:.0f} page faults: XLA:CPU '
          f'maps its temp buffer afresh each run)')
  for r in runs if (_BY_OP.value or _PROFILE.value) else []:
    trace_dir = _PROFILE.value or tempfile.mkdtemp(prefix='profile_trunk_')
    if len(runs) > 1:
      trace_dir = os.path.join(trace_dir, r['name'].replace(' ', '_').replace('=', '-'))
    n = 2
    t0 = time.perf_counter()
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      for _ in range(n):
        r['state'], loss = r['compiled'](r['state'], r['x'], r['rng'])
        jax.block_until_ready(loss)
    wall = (time.perf_counter() - t0) / n * 1e3
    print(f'  {r["name"]}: trace in {trace_dir}')
    if _BY_OP.value:
      by_op(trace_dir, r['hlo'], n, wall)
  sys.stdout.flush()


def main(argv):
  del argv
  if _MALLOC.value == 'keep':
    from vad_jax.host_memory import keep_freed_memory
    keep_freed_memory()
  for size in (['full', 'local'] if _SIZE.value == 'both' else [_SIZE.value]):
    run(size)


if __name__ == '__main__':
  app.run(main)
