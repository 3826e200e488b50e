"""vad_jax against the same hybrid in PyTorch eager (benchmarks/torch_hybrid.py), side by side on CPU.

  flock /tmp/bench.lock python benchmarks/side_by_side.py [--height=64 --width=64 --clip_len=16
      --clips=8 --steps=5 --parts=trunk,temporal,full,eval --dtype=float32 --threads=2]

The full config (configs/hybrid.py) at the given shapes, no frozen stages: `--clips` clips a step
(config.batch_size) of `--clips_per_video` (default the config's 4) make clips / clips_per_video
videos of HybridSystem.train_frames = clips_per_video * clip_len + horizon frames (defaults: 2 x 68
= 136 frames through the trunk). Parts, each one train step (forward + backward + Adam update) or
one prediction step, on the same inputs in both frameworks:
  trunk     EfficientNet-B0 on every frame of the batch, loss mean(feature^2); vad_jax: the trunk
            as a System in vad_jax.train.step.make_train_step (the real step machinery)
  temporal  BiLSTM + Transformer + heads + the hybrid's loss on precomputed trunk features
            [videos, frames, 1280] (the model with trunk='none': a parameter-free layer norm
            first, in both)
  full      the hybrid train step: vad_jax's jitted step as benchmarks/train_step.py builds it;
            PyTorch: torch_hybrid's model + loss + AdamW
  eval      scoring `--eval_videos` videos of data.eval_frames frames, clips every
            data.eval_stride frames, no gradient (vad_jax's make_predict_step; torch inference_mode)
Optimizer in both: config.optim's chain, global-norm clip 1.0 -> Adam -> decoupled weight decay
on ndim > 1 parameters (torch: clip_grad_norm_ + AdamW with two parameter groups).

Every (framework, part) runs in its own subprocess, one after the other, so each one's peak
memory is its own: the process's peak resident set (getrusage ru_maxrss; on CPU both frameworks
keep tensors in host memory), and its RSS before the part was built (imports + inputs) beside
it. Timing: vad_jax's lower + compile, then its first step; torch's first step (lazy oneDNN
set-up) apart; then `--warmup` untimed steps and `--steps` timed ones, the median reported.
--threads pins each subprocess to that many cores (sched_setaffinity: XLA sizes its pool from
it) and sets torch.set_num_threads. The inputs are one training batch of the config's own
pipeline (seed 0) and the first test videos, written once and read by every subprocess. The
machine's own reference, a 1024x1024 float32 numpy matmul (as benchmarks/streaming.py), prints
beside the figures, and so do the cores other processes kept busy during each part's timed
steps (/proc/stat): a second job on a 2-core machine distorts both frameworks (torch's OpenMP
barriers most: 2-10x slower steps), so a figure taken beside one is not a measurement.
"""

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))

PARTS = ('trunk', 'temporal', 'full', 'eval')
TITLES = {'trunk': 'trunk train step', 'temporal': 'temporal train step',
          'full': 'full train step', 'eval': 'eval scoring'}


CHILD_FLAGS = ('height', 'width', 'clip_len', 'clips', 'clips_per_video', 'eval_videos', 'steps',
               'warmup', 'dtype', 'threads', 'malloc')
# (--set is passed on separately: it repeats)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--height', type=int, default=64)
  p.add_argument('--width', type=int, default=64)
  p.add_argument('--clip_len', type=int, default=16)
  p.add_argument('--clips', type=int, default=8, help='clips a train step (config.batch_size)')
  p.add_argument('--clips_per_video', type=int, default=0, help="0: the config's (4)")
  p.add_argument('--eval_videos', type=int, default=0, help="0: the config's eval_batch_size")
  p.add_argument('--steps', type=int, default=5, help='timed steps (median reported)')
  p.add_argument('--warmup', type=int, default=1, help='untimed steps after the first')
  p.add_argument('--parts', default=','.join(PARTS), help=f'subset of {",".join(PARTS)}')
  p.add_argument('--frameworks', default='jax,torch')
  p.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'),
                 help='compute dtype (parameters float32); torch: autocast')
  p.add_argument('--threads', type=int, default=len(os.sched_getaffinity(0)))
  p.add_argument('--malloc', default='keep', choices=('keep', 'default'),
                 help="'keep': vad_jax.host_memory.keep_freed_memory() in both frameworks' "
                      "processes (what vad_jax's entry points do); 'default': glibc's own")
  p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                 help='config override for both frameworks, e.g. model.trunk.conv_impl=xla')
  p.add_argument('--json', default='', help='also write the results here')
  p.add_argument('--child', default='', help=argparse.SUPPRESS)   # 'prepare' | 'jax:part' | ...
  p.add_argument('--data', default='', help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  args.parts = [s for s in args.parts.split(',') if s]
  if set(args.parts) - set(PARTS):
    p.error(f'--parts: unknown {sorted(set(args.parts) - set(PARTS))}; choose from {PARTS}')
  return args


def make_config(args):
  """configs/hybrid.py (full size) at the benchmark's shapes; no JAX needed."""
  from configs import hybrid as hybrid_config
  c = hybrid_config.get_config()
  c.requires_accelerator = False
  c.data.height, c.data.width, c.data.clip_len = args.height, args.width, args.clip_len
  c.data.clips_per_video = args.clips_per_video or c.data.clips_per_video
  c.data.eval_stride = min(c.data.eval_stride, args.clip_len)
  c.batch_size = args.clips
  c.eval_batch_size = args.eval_videos or c.eval_batch_size
  c.model.dtype = args.dtype
  c.model.trunk.frozen_stages = 0
  c.data.worker_threads = 1
  for kv in args.set:
    key, _, value = kv.partition('=')
    *path, last = key.split('.')
    node = c
    for k in path:
      node = node[k]
    node[last] = type(node[last])(value) if not isinstance(node[last], bool) else value == 'True'
  return c


def rss_gib() -> float:
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**30


def peak_rss_gib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20     # KiB on Linux


def busy_cpu_s() -> tuple[float, float]:
  """(CPU seconds all processes on the machine have used, those of this process): over an
  interval, their difference is what OTHER processes took meanwhile."""
  with open('/proc/stat') as f:
    user, nice, system, _, _, irq, softirq, steal = map(int, f.readline().split()[1:9])
  ru = resource.getrusage(resource.RUSAGE_SELF)
  return ((user + nice + system + irq + softirq + steal) / os.sysconf('SC_CLK_TCK'),
          ru.ru_utime + ru.ru_stime)


def timed(step, steps: int, warmup: int, sync=lambda out: out) -> dict:
  """First call timed apart, `warmup` untimed, `steps` timed; seconds, and the cores other
  processes kept busy on average during the timed steps."""
  t0 = time.perf_counter()
  sync(step())
  first = time.perf_counter() - t0
  for _ in range(warmup):
    sync(step())
  times = []
  (busy0, own0), start = busy_cpu_s(), time.perf_counter()
  for _ in range(steps):
    t0 = time.perf_counter()
    sync(step())
    times.append(time.perf_counter() - t0)
  (busy1, own1), wall = busy_cpu_s(), time.perf_counter() - start
  return {'first_s': first, 'step_s': statistics.median(times), 'min_s': min(times),
          'max_s': max(times), 'other_cores': max(0.0, busy1 - busy0 - (own1 - own0)) / wall}


# ----------------------------------------------------------------------------- inputs
def prepare(args, out_dir: str):
  """One training batch of the config's pipeline, the first test videos, trunk-sized features,
  and the system's focal alpha -> out_dir/{inputs.npz, meta.json}."""
  import jax
  from vad_jax import mesh as mesh_lib
  from vad_jax.data import pipeline
  from vad_jax.models.efficientnet import feature_dim
  from vad_jax.train import loop
  config = make_config(args)
  loop.check_config(config)
  system, srcs, info, _ = loop.build(config)
  videos = loop.examples_per_step(config, type(system), mesh_lib.make_mesh(config.mesh))
  batch = next(pipeline.train_iterator(config, srcs['train'], system.train_fields, videos,
                                       config.seed))
  test = srcs['test']
  eval_video = np.stack([test.eval_transform(test[i])['video']
                         for i in range(config.eval_batch_size)])
  b, n = batch['video'].shape[:2]
  width = feature_dim(config.model.trunk.width_mult)
  feats = np.random.default_rng(0).standard_normal((b, n, width)).astype(np.float32)
  np.savez(os.path.join(out_dir, 'inputs.npz'), video=batch['video'], label=batch['label'],
           eval_video=eval_video, features=feats)
  meta = {'alpha': list(system.alpha), 'train_frames': int(system.train_frames(config)),
          'videos': int(b), 'eval_stride': int(system.eval_stride or config.data.clip_len),
          'labels': batch['label'].tolist(), 'jax': jax.__version__}
  with open(os.path.join(out_dir, 'meta.json'), 'w') as f:
    json.dump(meta, f)


def load_inputs(data_dir: str):
  with open(os.path.join(data_dir, 'meta.json')) as f:
    meta = json.load(f)
  with np.load(os.path.join(data_dir, 'inputs.npz')) as z:
    return {k: z[k] for k in z.files}, meta


# ----------------------------------------------------------------------------- vad_jax
def run_jax(args, part: str, data: dict, meta: dict) -> dict:
  import jax
  import jax.numpy as jnp
  from vad_jax import mesh as mesh_lib
  from vad_jax.models.efficientnet import EfficientNet
  from vad_jax.models.inputs import trunk_inputs
  from vad_jax.train import loop, optim, step as step_lib

  @dataclasses.dataclass(frozen=True)
  class TrunkOnly:
    """The hybrid's trunk as a System for make_train_step: every frame of the batch's videos
    [B, N, H, W, 3] through the EfficientNet, loss mean(feature^2) of the pooled [B*N, F]."""
    model: EfficientNet
    train_fields = ('video',)

    def frames(self, video):
      return trunk_inputs(video, 'rgb', self.model.dtype).reshape(-1, *video.shape[2:])

    def init(self, rng, spec):
      return self.model.init({'params': rng}, self.frames(jnp.zeros(spec['video'].shape,
                                                                    jnp.uint8)), train=False)

    def frozen_params(self):
      return ()

    def loss(self, variables, batch, rng):
      f, mutated = self.model.apply(variables, self.frames(batch['video']), train=True,
                                    rngs={'dropout': rng}, mutable=['batch_stats'])
      loss = jnp.mean(jnp.square(f.astype(jnp.float32)))
      return loss, ({'loss': loss}, dict(mutated))

  config = make_config(args)
  mesh = mesh_lib.make_mesh(config.mesh)
  system, _, info, _ = loop.build(config)
  base_rss = rss_gib()
  m = system.model
  spec = lambda arrays: {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in arrays.items()}
  tx_fn = lambda s: lambda params: optim.make(config.optim, params, s.frozen_params(),
                                               config.num_steps)
  train_step = lambda s: step_lib.make_train_step(
      s, mesh, config.seed, optim.schedule(config.optim, config.num_steps), config.ema_decay,
      **step_lib.tricks(config))                # as benchmarks/train_step.py builds it
  if part == 'trunk':
    s = TrunkOnly(EfficientNet(width_mult=m.width_mult, depth_mult=m.depth_mult,
                               padding=m.padding, depthwise_impl=m.depthwise_impl,
                               conv_impl=m.conv_impl,
                               drop_connect_rate=m.drop_connect_rate, bn_momentum=m.bn_momentum,
                               dtype=m.dtype, param_dtype=m.param_dtype))
    batch = {'video': data['video']}
    state = step_lib.init_state(config, s, mesh, spec(batch), tx_fn(s))
  elif part == 'temporal':
    s = dataclasses.replace(system, model=m.clone(trunk='none'))
    batch = {'video': data['features'], 'label': data['label']}
    state = step_lib.init_state(config, s, mesh, spec(batch), tx_fn(s))
  else:
    s = system
    state = loop.init_state(config, system, info, mesh)
    batch = ({'video': data['video'], 'label': data['label']} if part == 'full' else
             {'video': data['eval_video']})
  fn = step_lib.make_predict_step(s, mesh) if part == 'eval' else train_step(s)
  batch = mesh_lib.to_global(batch, mesh)
  n_params = sum(x.size for x in jax.tree.leaves(state.params))

  t0 = time.perf_counter()
  compiled = fn.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  if part == 'eval':
    step = lambda: compiled(state, batch)
  else:
    def step():
      nonlocal state
      state, metrics = compiled(state, batch)
      return state, metrics
  r = timed(step, args.steps, args.warmup, jax.block_until_ready)
  return dict(r, compile_s=compile_s, params=int(n_params), base_rss_gib=base_rss,
              version=f'jax {jax.__version__} ({jax.default_backend()}, '
                      f'{jax.device_count()} device)')


# ----------------------------------------------------------------------------- PyTorch
def run_torch(args, part: str, data: dict, meta: dict) -> dict:
  import torch
  import torch_hybrid as th
  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  config = make_config(args)
  kw = th.model_kwargs(config)
  base_rss = rss_gib()
  cast = (torch.autocast('cpu', torch.bfloat16) if args.dtype == 'bfloat16' else
          torch.autocast('cpu', enabled=False))
  video = torch.from_numpy(data['video'])
  label = torch.from_numpy(data['label']).long()
  if part == 'trunk':
    model = th.EfficientNet(kw['width_mult'], kw['depth_mult'], kw['drop_connect_rate'],
                            kw['bn_momentum']).to(memory_format=torch.channels_last)

    def loss_fn():
      f = th.trunk_features(model, video.reshape(-1, *video.shape[2:]))
      return f.float().square().mean()
  else:
    if part == 'temporal':
      kw = dict(kw, trunk='none', feature_dim=data['features'].shape[-1])
      video = torch.from_numpy(data['features'])
    model = th.HybridDetector(**kw)
    lkw = dict(alpha=meta['alpha'], n_frames=video.shape[1], clip_len=kw['clip_len'],
               horizon=kw['horizon'], **th.loss_kwargs(config))
    loss_fn = lambda: th.hybrid_loss(model(video), label, **lkw)[0]
  o = config.optim
  opt = th.optimizer([model], lr=o.lr, weight_decay=o.weight_decay, b1=o.b1, b2=o.b2, eps=o.eps)
  params = [p for g in opt.param_groups for p in g['params']]

  if part == 'eval':
    model.eval()
    eval_video = torch.from_numpy(data['eval_video'])

    def step():
      with torch.inference_mode(), cast:
        out = model(eval_video, stride=meta['eval_stride'])
      return out['score'], out['logits']
  else:
    model.train()

    def step():
      opt.zero_grad(set_to_none=True)
      with cast:
        loss = loss_fn()
      loss.backward()
      if o.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
      opt.step()
      return loss
  r = timed(step, args.steps, args.warmup)
  return dict(r, compile_s=None, params=sum(p.numel() for p in params), base_rss_gib=base_rss,
              version=f'torch {torch.__version__}')


# ----------------------------------------------------------------------------- driver
def child(args):
  if args.malloc == 'keep':
    from vad_jax.host_memory import keep_freed_memory
    keep_freed_memory()
  if args.threads < len(os.sched_getaffinity(0)):
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.threads])
  if args.child == 'prepare':
    prepare(args, args.data)
    return
  framework, part = args.child.split(':')
  data, meta = load_inputs(args.data)
  r = (run_jax if framework == 'jax' else run_torch)(args, part, data, meta)
  r['peak_rss_gib'] = peak_rss_gib()
  print('RESULT ' + json.dumps(r), flush=True)


def spawn(argv, child_arg, data_dir):
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get('JAX_PLATFORMS', 'cpu'),
             OPENBLAS_NUM_THREADS='1')   # numpy is not timed; its BLAS threads would only contend
  cmd = [sys.executable, os.path.abspath(__file__), *argv, f'--child={child_arg}',
         f'--data={data_dir}']
  p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  lines = [l for l in p.stdout.splitlines() if l.startswith('RESULT ')]
  if p.returncode or (child_arg != 'prepare' and not lines):
    sys.stderr.write(p.stderr[-4000:])
    raise SystemExit(f'{child_arg} failed (exit {p.returncode})')
  return json.loads(lines[-1][7:]) if lines else None


def matmul_reference() -> float:
  a = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32)
  a @ a
  t0 = time.perf_counter()
  for _ in range(10):
    a @ a
  return (time.perf_counter() - t0) / 10


def main():
  args = parse_args()
  if args.child:
    child(args)
    return
  argv = [f'--{k}={getattr(args, k)}' for k in CHILD_FLAGS]
  argv += [f'--set={kv}' for kv in args.set]
  config = make_config(args)
  frameworks = [f for f in args.frameworks.split(',') if f]
  ref, load = matmul_reference(), os.getloadavg()[0]
  results = {}
  with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    spawn(argv, 'prepare', tmp)
    _, meta = load_inputs(tmp)
    for part in args.parts:
      for fw in frameworks:
        print(f'... {fw} {part}', file=sys.stderr, flush=True)
        results[(fw, part)] = spawn(argv, f'{fw}:{part}', tmp)
    wall = time.perf_counter() - t0
  ref_end = matmul_reference()

  b, n = meta['videos'], meta['train_frames']
  frames = {'trunk': b * n, 'temporal': b * n, 'full': b * n,
            'eval': config.eval_batch_size * config.data.eval_frames}
  versions = ', '.join(sorted({r['version'] for r in results.values()}))
  print(f"side_by_side: configs/hybrid.py full model, {args.dtype}, {args.height}x{args.width}, "
        f"clip_len {args.clip_len}, {args.clips} clips a step = {b} videos x {n} frames "
        f"(clips_per_video {config.data.clips_per_video}, horizon {config.model.horizon}) = "
        f"{b * n} trunk frames, labels {meta['labels']}; eval {config.eval_batch_size} videos x "
        f"{config.data.eval_frames} frames, clips every {meta['eval_stride']}")
  print(f'machine: {os.cpu_count()} cores ({args.threads} a framework); reference: numpy '
        f'1024x1024 float32 matmul {ref * 1e3:.1f} ms at the start, {ref_end * 1e3:.1f} ms at '
        f'the end; load average {load:.2f} / {os.getloadavg()[0]:.2f}; {versions}')
  print(f'{args.steps} timed steps after {1 + args.warmup} untimed, median; {wall:.0f} s in all')
  head = (f"{'part':<20} {'frames':>6} {'vad_jax f/s':>11} {'torch f/s':>10} {'jax/torch':>9} "
          f"{'jax ms':>7} {'torch ms':>8} {'jax compile':>11} {'jax 1st':>8} {'torch 1st':>9} "
          f"{'jax peak GiB':>12} {'torch peak GiB':>14}")
  print(head)
  print('-' * len(head))
  cell = lambda x, f, unit='': '-' if x is None else format(x, f) + unit
  for part in args.parts:
    j, t = results.get(('jax', part)), results.get(('torch', part))
    fps = lambda r: r and frames[part] / r['step_s']
    ratio = fps(j) / fps(t) if j and t else None
    mem = lambda r: r and f"{r['peak_rss_gib']:.2f} ({r['base_rss_gib']:.2f})"
    print(f"{TITLES[part]:<20} {frames[part]:>6} {cell(fps(j), '.1f'):>11} "
          f"{cell(fps(t), '.1f'):>10} {cell(ratio, '.2f'):>9} "
          f"{cell(j and j['step_s'] * 1e3, '.0f'):>7} {cell(t and t['step_s'] * 1e3, '.0f'):>8} "
          f"{cell(j and j['compile_s'], '.1f', ' s'):>11} {cell(j and j['first_s'], '.2f', ' s'):>8} "
          f"{cell(t and t['first_s'], '.2f', ' s'):>9} {cell(mem(j), ''):>12} "
          f"{cell(mem(t), ''):>14}")
  print('f/s: frames a second (temporal: feature vectors); ms: median step; jax compile: lower + '
        "compile of the step; 1st: the first step after it (torch: its first step at all); peak: "
        "the part's own process, ru_maxrss (RSS after imports + inputs, before building)")
  for part in args.parts:
    spread = '; '.join(f"{fw} {r['min_s'] * 1e3:.0f}-{r['max_s'] * 1e3:.0f} ms, "
                       f"{r['params']:,} params, other processes {r['other_cores']:.2f} cores"
                       for fw in frameworks if (r := results.get((fw, part))))
    print(f'  {part}: {spread}')
  print("(min-max of the timed steps; 'other processes': cores the rest of the machine kept "
        'busy during them, from /proc/stat: above ~0.1 the figures are disturbed)')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump({'args': vars(args), 'meta': meta, 'matmul_ms': [ref * 1e3, ref_end * 1e3],
                 'frames': frames,
                 'results': {f'{fw}:{p}': r for (fw, p), r in results.items()}}, f, indent=1)


if __name__ == '__main__':
  main()
