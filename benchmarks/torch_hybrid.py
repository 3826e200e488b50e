"""A PyTorch (eager, CPU) reference of vad_jax's hybrid, for benchmarks/side_by_side.py.

Mirrors vad_jax.models.hybrid.HybridDetector (EfficientNet trunk -> BiLSTM -> relative
Transformer -> heads) and vad_jax.systems.hybrid.HybridSystem.loss (regression to a projected,
stop-gradient future feature, 14-class focal on the MIL witness, MIL ranking, VAE) module for
module and with the same initialisers; tests/test_torch_reference.py checks the parameter counts
and, with vad_jax's weights copied in (`load_flax`), the outputs and the loss. Imports no JAX
(its benchmark process must hold only torch's memory), so the few constants it needs are
repeated here and the test checks them against vad_jax's.

Where it differs from vad_jax (numerically, not in architecture):
  * the LSTMs are torch's fused `nn.LSTM`, which adds two biases (b_ih + b_hh) to each gate
    where flax's OptimizedLSTMCell has one: `bias_hh_*` are fixed zeros (requires_grad False,
    not counted, never updated), so the function and the trained parameters are flax's;
  * BatchNorm's running variance takes torch's unbiased batch variance (flax: biased);
  * trunk padding: 'symmetric' only (k // 2 each side, what the benchmarked config uses);
    `frozen_stages` and the 'foreground' / 'motion' inputs are not mirrored ('rgb' only).
Random draws (dropout, stochastic depth, the VAE's eps) follow the same distributions, not the
same streams. torch is an optional `bench` extra, never a vad_jax dependency.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NORMAL = 0                                   # vad_jax.classes.NORMAL
IMAGENET_MEAN = (0.485, 0.456, 0.406)        # vad_jax.models.efficientnet
IMAGENET_STD = (0.229, 0.224, 0.225)
SE_RATIO = 0.25
# (expand, kernel, stride, in, out, repeats) for B0, vad_jax.models.efficientnet.BLOCKS_B0.
BLOCKS_B0 = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
LN_EPS = 1e-6                                # flax nn.LayerNorm's default
BN_EPS = 1e-3


def round_filters(filters: int, width_mult: float, divisor: int = 8) -> int:
  """vad_jax.models.efficientnet.round_filters."""
  filters = filters * width_mult
  new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
  return int(new + divisor if new < 0.9 * filters else new)


def round_repeats(repeats: int, depth_mult: float) -> int:
  return int(math.ceil(depth_mult * repeats))


def target_projection(in_dim: int, out_dim: int, seed: int = 0) -> np.ndarray:
  """vad_jax.models.hybrid.target_projection: fixed orthonormal [in_dim, out_dim]."""
  g = np.random.default_rng(seed).standard_normal((in_dim, max(in_dim, out_dim)))
  q, _ = np.linalg.qr(g)
  return q[:, :out_dim].astype(np.float32)


# ----------------------------------------------------------------------------- initialisers
def _lecun_normal_(w: torch.Tensor, fan_in: int):
  """flax's default Dense kernel init: truncated normal (+-2 sd), variance 1 / fan_in."""
  std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
  nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)


def _orthogonal_(w: torch.Tensor):
  """Orthogonal init of a square block (numpy's QR: this torch build's is ~100x slower)."""
  if w.is_meta:
    return
  q, r = np.linalg.qr(np.random.default_rng(int(torch.randint(2**31, ())))
                      .standard_normal(tuple(w.shape)))
  w.copy_(torch.from_numpy(q * np.sign(np.diag(r))))


def _dense(fin: int, fout: int, bias: bool = True) -> nn.Linear:
  """nn.Linear initialised as flax's nn.Dense (lecun normal kernel, zero bias)."""
  layer = nn.Linear(fin, fout, bias=bias)
  _lecun_normal_(layer.weight, fin)
  if bias:
    nn.init.zeros_(layer.bias)
  return layer


def _conv(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1,
          bias: bool = False) -> nn.Conv2d:
  """Conv2d, 'symmetric' padding k // 2; He normal (fan_out for dense convs as Keras' /
  vad_jax's _conv_init, fan_in = k*k for depthwise ones as its _dw_init)."""
  conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=bias)
  nn.init.kaiming_normal_(conv.weight, mode='fan_in' if groups > 1 else 'fan_out',
                          nonlinearity='relu')
  if bias:
    nn.init.zeros_(conv.bias)
  return conv


def _bn(c: int, momentum: float) -> nn.BatchNorm2d:
  """flax momentum m (running = m * running + (1 - m) * batch) is torch's 1 - m."""
  return nn.BatchNorm2d(c, eps=BN_EPS, momentum=1.0 - momentum)


# ----------------------------------------------------------------------------- trunk
class ConvBN(nn.Sequential):
  """Conv (no bias) + BN (+ SiLU). [N,Cin,H,W] -> [N,F,H/s,W/s]; vad_jax's _ConvBN."""

  def __init__(self, cin, cout, k, stride, bn_momentum, act=True):
    super().__init__(_conv(cin, cout, k, stride), _bn(cout, bn_momentum),
                     *([nn.SiLU()] if act else []))


class MBConv(nn.Module):
  """Inverted residual + SE + stochastic depth, vad_jax's MBConvBlock. [N,in,H,W] ->
  [N,out,H/s,W/s]."""

  def __init__(self, expand, k, stride, fin, fout, drop, bn_momentum):
    super().__init__()
    f = fin * expand
    self.expand = ConvBN(fin, f, 1, 1, bn_momentum) if expand != 1 else None
    self.dw = nn.Sequential(_conv(f, f, k, stride, groups=f), _bn(f, bn_momentum), nn.SiLU())
    se = max(1, int(fin * SE_RATIO))
    self.se_reduce, self.se_expand = _conv(f, se, bias=True), _conv(se, f, bias=True)
    self.project = ConvBN(f, fout, 1, 1, bn_momentum, act=False)
    self.residual = stride == 1 and fin == fout
    self.drop = drop

  def forward(self, x):
    inputs = x
    if self.expand is not None:
      x = self.expand(x)
    x = self.dw(x)
    s = x.mean((2, 3), keepdim=True)
    x = x * torch.sigmoid(self.se_expand(F.silu(self.se_reduce(s))))
    x = self.project(x)
    if self.residual:
      if self.training and self.drop > 0:      # per-sample Bernoulli, rescaled by 1 / keep
        keep = 1.0 - self.drop
        x = x * x.new_empty(x.shape[0], 1, 1, 1).bernoulli_(keep).div_(keep)
      x = x + inputs
    return x


class EfficientNet(nn.Module):
  """EfficientNet trunk, global-mean pooled. x [N,3,H,W] (normalised; channels_last memory
  works best) -> [N, round_filters(1280)]."""

  def __init__(self, width_mult=1.0, depth_mult=1.0, drop_connect_rate=0.2, bn_momentum=0.99,
               in_channels=3):
    super().__init__()
    rf = lambda f: round_filters(f, width_mult)
    self.stem = ConvBN(in_channels, rf(32), 3, 2, bn_momentum)
    total = float(sum(round_repeats(b[5], depth_mult) for b in BLOCKS_B0))
    blocks, b = [], 0
    for e, k, s, fin, fout, r in BLOCKS_B0:
      for j in range(round_repeats(r, depth_mult)):
        blocks.append(MBConv(e, k, s if j == 0 else 1, rf(fin) if j == 0 else rf(fout), rf(fout),
                             drop_connect_rate * (b + j) / total, bn_momentum))
      b += round_repeats(r, depth_mult)
    self.blocks = nn.Sequential(*blocks)
    self.head = ConvBN(rf(320), rf(1280), 1, 1, bn_momentum)
    self.features = rf(1280)

  def forward(self, x):
    return self.head(self.blocks(self.stem(x))).mean((2, 3))


def preprocess(frames: torch.Tensor) -> torch.Tensor:
  """uint8 [..., 3] -> ImageNet-normalised float32, vad_jax.models.efficientnet.preprocess."""
  mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)
  std = torch.tensor(IMAGENET_STD, dtype=torch.float32)
  return (frames.float() / 255.0 - mean) / std


def trunk_features(trunk: EfficientNet, frames: torch.Tensor) -> torch.Tensor:
  """uint8 frames [N, H, W, 3] -> [N, F]. The NHWC -> NCHW permute is a view whose memory is
  already channels_last, so the trunk runs channels_last with no copy."""
  x = preprocess(frames).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
  return trunk(x)


# ----------------------------------------------------------------------------- temporal model
class BiLSTM(nn.Module):
  """x [B,T,F] -> [B,T,2h]: `layers` bidirectional LSTM layers ([fwd, bwd] concatenated,
  dropout between layers, not after the last), then LayerNorm; vad_jax.models.recurrent.BiLSTM.
  The b_hh biases are fixed zeros (flax's cell has one bias a gate)."""

  def __init__(self, fin, hidden=256, layers=2, dropout=0.5):
    super().__init__()
    self.lstm = nn.LSTM(fin, hidden, layers, batch_first=True, bidirectional=True,
                        dropout=dropout if layers > 1 else 0.0)
    for name, p in self.lstm.named_parameters():
      if name.startswith('weight_ih'):
        _lecun_normal_(p.data, p.shape[1])
      elif name.startswith('weight_hh'):       # orthogonal a gate, as flax's recurrent kernels
        for g in range(4):
          _orthogonal_(p.data[g * hidden:(g + 1) * hidden])
      else:
        nn.init.zeros_(p)
        p.requires_grad_(not name.startswith('bias_hh'))
    self.norm = nn.LayerNorm(2 * hidden, eps=LN_EPS)

  def forward(self, x):
    return self.norm(self.lstm(x)[0])


def sinusoid(offsets: torch.Tensor, dim: int) -> torch.Tensor:
  """vad_jax.models.transformer.sinusoid: offsets [...] -> [..., dim], sin/cos interleaved."""
  half = dim // 2
  inv_freq = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) * 2.0 / dim)
  angle = offsets.float()[..., None] * inv_freq
  return torch.stack([torch.sin(angle), torch.cos(angle)], -1).reshape(*offsets.shape, 2 * half)


class RelativeSelfAttention(nn.Module):
  """Multi-head self-attention + per-head bias w_h . sinusoid(i - j). x [B,T,D] -> [B,T,D].
  Attention dropout is broadcast over batch and heads (one [T, T] mask), as flax's default."""

  def __init__(self, d, heads, dropout, encoding_dim=64):
    super().__init__()
    if d % heads:
      raise ValueError(f'width {d} is not divisible by num_heads={heads}')
    self.heads, self.dropout, self.encoding_dim = heads, dropout, encoding_dim
    self.query, self.key, self.value, self.out = (_dense(d, d) for _ in range(4))
    self.rel_bias = _dense(encoding_dim, heads, bias=False)
    self._enc = {}                                   # T -> sinusoid [T, T, E] (a constant)

  def forward(self, x):
    b, t, d = x.shape
    split = lambda y: y.view(b, t, self.heads, d // self.heads).transpose(1, 2)  # [B,H,T,Dh]
    q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
    if t not in self._enc:
      pos = torch.arange(t)
      self._enc[t] = sinusoid(pos[:, None] - pos[None, :], self.encoding_dim)
    bias = self.rel_bias(self._enc[t]).permute(2, 0, 1)                        # [H, T, T]
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.heads) + bias, -1)
    if self.training and self.dropout > 0:
      keep = 1.0 - self.dropout
      w = w * w.new_empty(t, t).bernoulli_(keep).div_(keep)
    return self.out((w @ v).transpose(1, 2).reshape(b, t, d))


class EncoderLayer(nn.Module):
  """Post-norm: x = LN(x + Drop(Attn(x))); x = LN(x + Drop(FFN(x))), FFN = ff2(Drop(relu(ff1)))."""

  def __init__(self, d, heads, ff_dim, dropout):
    super().__init__()
    self.attn = RelativeSelfAttention(d, heads, dropout)
    self.norm1, self.norm2 = nn.LayerNorm(d, eps=LN_EPS), nn.LayerNorm(d, eps=LN_EPS)
    self.ff1, self.ff2 = _dense(d, ff_dim), _dense(ff_dim, d)
    self.drop = nn.Dropout(dropout)

  def forward(self, x):
    x = self.norm1(x + self.drop(self.attn(x)))
    y = self.ff2(self.drop(F.relu(self.ff1(x))))
    return self.norm2(x + self.drop(y))


class MLPHead(nn.Sequential):
  """Dense(hidden) -> LayerNorm -> ReLU -> Dropout -> Dense(out). [N, D] -> [N, out]."""

  def __init__(self, d, hidden, out, dropout):
    super().__init__(_dense(d, hidden), nn.LayerNorm(hidden, eps=LN_EPS), nn.ReLU(),
                     nn.Dropout(dropout), _dense(hidden, out))


class VAEHead(nn.Module):
  """D -> 256 -> 128 -> (mu, logvar) [N, L] -> 128 -> 256 -> D; z = mu + exp(logvar / 2) eps in
  training, mu otherwise. -> (recon [N, D], mu, logvar)."""

  def __init__(self, d, latent=64, hidden=(256, 128), dropout=0.3):
    super().__init__()
    widths = (d, *hidden)
    self.enc = nn.ModuleList(_dense(a, b) for a, b in zip(widths[:-1], widths[1:]))
    self.mu, self.logvar = _dense(hidden[-1], latent), _dense(hidden[-1], latent)
    widths = (latent, *reversed(hidden))
    self.dec = nn.ModuleList(_dense(a, b) for a, b in zip(widths[:-1], widths[1:]))
    self.recon = _dense(hidden[0], d)
    self.drop = nn.Dropout(dropout)

  def forward(self, x):
    h = x
    for layer in self.enc:
      h = self.drop(F.relu(layer(h)))
    mu, logvar = self.mu(h), self.logvar(h)
    h = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if self.training else mu
    for layer in self.dec:
      h = self.drop(F.relu(layer(h)))
    return self.recon(h), mu, logvar


def _standardize(x, eps=1e-5):
  """Parameter-free layer norm over the last axis (biased variance, as jnp.var)."""
  mean = x.mean(-1, keepdim=True)
  return (x - mean) * torch.rsqrt(x.var(-1, keepdim=True, unbiased=False) + eps)


# ----------------------------------------------------------------------------- the hybrid
class HybridDetector(nn.Module):
  """vad_jax.models.hybrid.HybridDetector. forward(video uint8 [B,N,H,W,3], or float features
  [B,N,F] when trunk='none'; stride) -> dict of [B, K, ...] outputs, K = (N - T) // stride + 1."""

  def __init__(self, clip_len, num_classes=14, horizon=4, width_mult=1.0, depth_mult=1.0,
               padding='symmetric', drop_connect_rate=0.2, bn_momentum=0.99, trunk='efficientnet',
               input='rgb', feature_dim=None, lstm_hidden=256, lstm_layers=2, lstm_dropout=0.5,
               num_heads=8, ff_dim=1024, transformer_layers=2, transformer_dropout=0.3,
               head_hidden=256, head_dropout=0.5, reg_dim=256, vae_latent=64, vae_dropout=0.3):
    super().__init__()
    if trunk not in ('efficientnet', 'none'):
      raise ValueError(f"trunk must be 'efficientnet' or 'none', got {trunk!r}")
    if padding != 'symmetric' or input != 'rgb':
      raise ValueError(f"only padding='symmetric' and input='rgb' are mirrored, got "
                       f'{padding!r}, {input!r}')
    self.clip_len, self.horizon = clip_len, horizon
    self.trunk = (EfficientNet(width_mult, depth_mult, drop_connect_rate, bn_momentum)
                  .to(memory_format=torch.channels_last) if trunk == 'efficientnet' else None)
    f = self.trunk.features if self.trunk is not None else feature_dim
    if f is None:
      raise ValueError("trunk='none' needs feature_dim (the width of the input features)")
    d = 2 * lstm_hidden
    self.bilstm = BiLSTM(f, lstm_hidden, lstm_layers, lstm_dropout)
    self.transformer = nn.Sequential(*(EncoderLayer(d, num_heads, ff_dim, transformer_dropout)
                                       for _ in range(transformer_layers)))
    self.regression = MLPHead(d, head_hidden, reg_dim, head_dropout)
    self.classification = MLPHead(d, head_hidden, num_classes, head_dropout)
    self.vae = VAEHead(d, vae_latent, dropout=vae_dropout)
    meta = torch.empty(0).is_meta                   # built under torch.device('meta'): shapes only
    proj = torch.empty(f, reg_dim) if meta else torch.from_numpy(target_projection(f, reg_dim))
    self.register_buffer('proj', proj, persistent=False)

  def parts(self) -> dict[str, list[nn.Module]]:
    """Modules by vad_jax's parameter groups: trunk / temporal (bilstm, transformer) / heads."""
    return {'trunk': [self.trunk] if self.trunk is not None else [],
            'temporal': [self.bilstm, self.transformer],
            'heads': [self.regression, self.classification, self.vae]}

  def forward(self, video, stride=None):
    b, n = video.shape[:2]
    t = self.clip_len
    s = stride or t
    if n < t or not 0 < s <= t:
      raise ValueError(f'{n} frames, clip_len {t}, stride {s}')
    k = (n - t) // s + 1
    starts = torch.arange(k) * s
    if self.trunk is None:
      feats = _standardize(video.float())                               # [B, N, F]
    else:
      feats = trunk_features(self.trunk, video.reshape(b * n, *video.shape[2:])).view(b, n, -1)
    clips = feats[:, starts[:, None] + torch.arange(t)].reshape(b * k, t, -1)   # [B*K, T, F]
    last = self.transformer(self.bilstm(clips))[:, -1]                  # [B*K, D]
    reg, logits = self.regression(last), self.classification(last)
    vae_in = last.detach()
    recon, mu, logvar = self.vae(vae_in)
    ends = torch.clamp(starts + t - 1 + self.horizon, max=n - 1)
    target = _standardize(feats[:, ends].detach().float() @ self.proj)  # [B, K, R]
    split = lambda a: a.reshape(b, k, *a.shape[1:]).float()
    logits = split(logits)
    return {'logits': logits, 'score': 1.0 - torch.softmax(logits, -1)[..., NORMAL],
            'reg': split(reg), 'reg_target': target, 'vae_in': split(vae_in),
            'vae_recon': split(recon), 'vae_mu': split(mu), 'vae_logvar': split(logvar)}


def model_kwargs(config) -> dict:
  """HybridDetector kwargs from a vad_jax config (config.model + config.data), as
  vad_jax.models.hybrid.from_config reads them (plain attribute access: no JAX needed)."""
  m, tr = config.model, config.model.trunk
  keys = ('num_classes', 'horizon', 'input', 'lstm_hidden', 'lstm_layers', 'lstm_dropout',
          'num_heads', 'ff_dim', 'transformer_layers', 'transformer_dropout', 'head_hidden',
          'head_dropout', 'reg_dim', 'vae_latent', 'vae_dropout')
  return dict(clip_len=config.data.clip_len, width_mult=tr.width_mult, depth_mult=tr.depth_mult,
              padding=tr.padding, drop_connect_rate=tr.drop_connect_rate,
              bn_momentum=tr.bn_momentum, trunk=tr.get('kind', 'efficientnet'),
              **{key: m[key] for key in keys})


# ----------------------------------------------------------------------------- the loss
def hybrid_loss(out: dict, label: torch.Tensor, alpha, n_frames: int, clip_len: int, horizon: int,
                w_reg=1.0, w_focal=0.5, w_mil=0.3, w_vae=0.3, beta=1.0, gamma=2.0, margin=0.5,
                lambda_smooth=8e-5, lambda_sparse=8e-5, vae_beta=0.01) -> tuple:
  """vad_jax.systems.hybrid.HybridSystem.loss on the model's outputs; label int [B].
  -> (total, {reg, focal, mil, vae}) scalars."""
  b, k = out['score'].shape
  anomalous = label != NORMAL
  kv = int(np.sum(np.arange(k) * clip_len + clip_len - 1 + horizon < n_frames))
  l_reg = (F.smooth_l1_loss(out['reg'][:, :kv], out['reg_target'][:, :kv], beta=beta)
           if kv else out['reg'].new_zeros(()))

  # Focal: every clip of a normal video; the top-scoring clip (MIL witness) of an anomalous one.
  witness = F.one_hot(out['score'].detach().argmax(1), k).float()
  weight = torch.where(anomalous[:, None], witness, torch.ones_like(witness)).reshape(-1)
  labels = label[:, None].expand(b, k).reshape(-1)
  log_pt = torch.log_softmax(out['logits'].reshape(b * k, -1), -1).gather(1, labels[:, None])[:, 0]
  focal = -log_pt * torch.clamp(-torch.expm1(log_pt), 0.0, 1.0) ** gamma
  focal = focal * torch.as_tensor(alpha, dtype=focal.dtype)[labels]
  focal = torch.where(weight != 0, focal, torch.zeros_like(focal))
  l_focal = (weight * focal).sum() / weight.sum().clamp_min(torch.finfo(focal.dtype).tiny)

  # MIL ranking (Sultani) over (anomalous, normal) bag pairs + smoothness / sparsity.
  s = out['score']
  top = s.max(1).values
  pairs = (anomalous[:, None] & ~anomalous[None, :]).float()
  hinge = F.relu(margin - top[:, None] + top[None, :])
  ranking = (pairs * hinge).sum() / pairs.sum().clamp_min(1.0)
  per_bag = lambda_smooth * ((s[:, 1:] - s[:, :-1]) ** 2).sum(1) + lambda_sparse * s.sum(1)
  a = anomalous.float()
  l_mil = ranking + (a * per_bag).sum() / a.sum().clamp_min(1.0)

  flat = lambda x: x.reshape(b * k, -1)
  mu, logvar = flat(out['vae_mu']), flat(out['vae_logvar'])
  recon = ((flat(out['vae_recon']) - flat(out['vae_in'])) ** 2).mean(1).mean()
  kl = (-0.5 * (1.0 + logvar - mu ** 2 - torch.exp(logvar)).sum(1)).mean()
  l_vae = recon + vae_beta * kl

  total = w_reg * l_reg + w_focal * l_focal + w_mil * l_mil + w_vae * l_vae
  return total, {'reg': l_reg, 'focal': l_focal, 'mil': l_mil, 'vae': l_vae}


def loss_kwargs(config) -> dict:
  """hybrid_loss's weights from `config.loss`, as HybridSystem.from_config reads them."""
  l = config.loss
  return dict(w_reg=l.w_reg, w_focal=l.w_focal, w_mil=l.w_mil, w_vae=l.w_vae,
              beta=l.smooth_l1_beta, gamma=l.focal_gamma, margin=l.mil_margin,
              lambda_smooth=l.mil_lambda_smooth, lambda_sparse=l.mil_lambda_sparse,
              vae_beta=l.vae_beta)


def optimizer(modules, lr=3e-4, weight_decay=1e-2, b1=0.9, b2=0.999, eps=1e-8):
  """vad_jax.train.optim's chain for name='adamw': Adam with decoupled decay on parameters
  with ndim > 1 (global-norm clipping is `clip`, called before `step`). Constant lr: the
  warm-up / cosine schedule is a scalar a step."""
  params = [p for m in modules for p in m.parameters() if p.requires_grad]
  groups = [{'params': [p for p in params if p.ndim > 1], 'weight_decay': weight_decay},
            {'params': [p for p in params if p.ndim <= 1], 'weight_decay': 0.0}]
  return torch.optim.AdamW(groups, lr=lr, betas=(b1, b2), eps=eps)


def count_params(modules) -> int:
  """Trained scalars of `modules` (the fixed-zero LSTM b_hh excluded)."""
  return sum(p.numel() for m in modules for p in m.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------- flax weights
def load_flax(model: HybridDetector, params: dict, batch_stats: dict | None = None):
  """Copies vad_jax's HybridDetector variables (numpy or jax arrays) into `model`: the
  layout map (HWIO -> OIHW, [in, out] -> [out, in], per-gate LSTM kernels -> torch's stacked
  i, f, g, o) that shows the two are the same function."""
  t = lambda a: torch.as_tensor(np.asarray(a, np.float32))

  def dense(layer, p):                                         # kernel [in.., out..]
    layer.weight.data.copy_(t(p['kernel']).reshape(layer.in_features, -1).T)
    if layer.bias is not None:
      layer.bias.data.copy_(t(p['bias']).reshape(-1))

  def norm(layer, p):
    layer.weight.data.copy_(t(p['scale']))
    layer.bias.data.copy_(t(p['bias']))

  def conv(layer, p):
    k = t(p['kernel'])                                         # [k, k, in, out] (dw: [k, k, 1, C])
    layer.weight.data.copy_(k.permute(3, 2, 0, 1))
    if layer.bias is not None:
      layer.bias.data.copy_(t(p['bias']))

  def bn(layer, p, s):
    norm(layer, p)
    if s is not None:
      layer.running_mean.copy_(t(s['mean']))
      layer.running_var.copy_(t(s['var']))

  def convbn(mod, p, s):
    conv(mod[0], p['conv'])
    bn(mod[1], p['bn'], s and s['bn'])

  if model.trunk is not None:
    tp, ts = params['trunk'], batch_stats and batch_stats['trunk']
    sub = lambda tree, *names: None if tree is None else _get(tree, names)
    convbn(model.trunk.stem, tp['stem'], sub(ts, 'stem'))
    convbn(model.trunk.head, tp['head'], sub(ts, 'head'))
    names = [(f'stage{i}', f'block{j}') for i in range(len(BLOCKS_B0))
             for j in range(len(tp[f'stage{i}']))]
    for block, (st, bl) in zip(model.trunk.blocks, names):
      p, s = tp[st][bl], sub(ts, st, bl)
      if block.expand is not None:
        conv(block.expand[0], p['expand_conv'])
        bn(block.expand[1], p['expand_bn'], s and s['expand_bn'])
      conv(block.dw[0], p['dwconv'])
      bn(block.dw[1], p['bn'], s and s['bn'])
      conv(block.se_reduce, p['se_reduce'])
      conv(block.se_expand, p['se_expand'])
      conv(block.project[0], p['project_conv'])
      bn(block.project[1], p['project_bn'], s and s['project_bn'])

  lp, lstm = params['bilstm'], model.bilstm.lstm
  for i in range(lstm.num_layers):
    for d, suffix in (('forward_rnn', ''), ('backward_rnn', '_reverse')):
      cell = lp[f'layer{i}'][d]['cell']
      getattr(lstm, f'weight_ih_l{i}{suffix}').data.copy_(
          torch.cat([t(cell[f'i{g}']['kernel']).T for g in 'ifgo']))
      getattr(lstm, f'weight_hh_l{i}{suffix}').data.copy_(
          torch.cat([t(cell[f'h{g}']['kernel']).T for g in 'ifgo']))
      getattr(lstm, f'bias_ih_l{i}{suffix}').data.copy_(
          torch.cat([t(cell[f'h{g}']['bias']) for g in 'ifgo']))
  norm(model.bilstm.norm, lp['norm'])

  for i, layer in enumerate(model.transformer):
    p = params['transformer'][f'layer{i}']
    for name in ('query', 'key', 'value', 'out'):              # [D, H, Dh] / [H, Dh, D]
      dense(getattr(layer.attn, name), p['attn'][name])
    dense(layer.attn.rel_bias, p['attn']['rel_bias']['proj'])
    dense(layer.ff1, p['ff1'])
    dense(layer.ff2, p['ff2'])
    norm(layer.norm1, p['norm1'])
    norm(layer.norm2, p['norm2'])

  for name in ('regression', 'classification'):
    head, p = getattr(model, name), params[name]
    dense(head[0], p['fc1'])
    norm(head[1], p['norm'])
    dense(head[4], p['fc2'])
  v, p = model.vae, params['vae']
  for i, layer in enumerate(v.enc):
    dense(layer, p[f'enc{i}'])
  for i, layer in enumerate(v.dec):
    dense(layer, p[f'dec{i}'])
  for name in ('mu', 'logvar', 'recon'):
    dense(getattr(v, name), p[name])
  return model


def _get(tree, names):
  for n in names:
    tree = tree[n]
  return tree

