"""ImageNet models of the paper's Sec. 6.2 / App. B.2, written out in torch.

torchvision cannot be installed beside the pinned torch 2.13.0 CPU wheel, and timm
needs torchvision, so the three families are defined here. Each matches its reference
layer for layer (tests compare parameter counts and multiply-accumulates with the
published numbers): ResNet v1.5 (stride on the 3x3 conv, as torchvision and the FLAX
ImageNet example), MLP-Mixer (Tolstikhin et al. 2021) and EfficientNet B0-B7 (Tan & Le
2019, torchvision's layout). ``resnet_tiny`` and ``mixer_tiny`` are CPU test sizes.

Models are built with plain ``nn.BatchNorm2d``; ``sync_batch_norm`` then picks how a job's
batch statistics span its processes, as the FLAX example's BatchNorm(axis_name='batch') does,
so a job on k GPUs trains the same function as one process on the whole global batch: torch's
own ``SyncBatchNorm`` under nccl, plain BN in one process, and ``SyncBN`` below under gloo
(torch's refuses CPU tensors; this is the tested CPU path of the DDP equality test).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from synsym.imagenet.registry import get


class _AllReduce(torch.autograd.Function):
    """Sum over ranks whose backward is again a sum over ranks: each rank's statistics
    depend on every rank's activations, so every rank's loss sends gradient to them."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        g = g.clone()
        dist.all_reduce(g)
        return g


class SyncBN(nn.BatchNorm2d):
    """BatchNorm2d whose batch statistics span every DDP rank (differentiably)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        ranks = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # statistics in >= float32
        count = torch.tensor(float(x.numel() // x.shape[1]), device=x.device)
        s = xf.sum((0, 2, 3))
        if ranks > 1:
            s, count = _AllReduce.apply(s), count * ranks
        mean = s / count
        centred = xf - mean[None, :, None, None]
        ss = (centred * centred).sum((0, 2, 3))
        if ranks > 1:
            ss = _AllReduce.apply(ss)
        var = ss / count
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean)
            self.running_var.mul_(1 - m).add_(m * var * count / (count - 1).clamp(min=1))
            self.num_batches_tracked.add_(1)
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        return (y * self.weight[None, :, None, None] + self.bias[None, :, None, None]).to(x.dtype)


def sync_batch_norm(net: nn.Module, world: int, backend: str | None) -> nn.Module:
    """The job's batch norm: plain BN in one process; torch.nn.SyncBatchNorm under nccl; SyncBN
    (above, differentiable all-reduces over gloo) otherwise. Parameters and buffers keep their
    names and values, so checkpoints load into any of them."""
    if world == 1:
        return net
    if backend == "nccl":
        return nn.SyncBatchNorm.convert_sync_batchnorm(net)
    return _to_sync_bn(net)


def _to_sync_bn(module: nn.Module) -> nn.Module:
    """Every nn.BatchNorm2d replaced by a SyncBN holding the same parameters and buffers."""
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, SyncBN):
        new = SyncBN(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new.to(module.weight.device)
    for name, child in module.named_children():
        setattr(module, name, _to_sync_bn(child))
    return module


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, eps: float = 1e-5) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout, eps=eps)]


# ----------------------------------------------------------------------------- ResNet
class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            *_conv_bn(cin, width, 1), nn.ReLU(inplace=True),
            *_conv_bn(width, width, 3, stride), nn.ReLU(inplace=True),
            *_conv_bn(width, cout, 1),
        )
        self.skip = nn.Sequential(*_conv_bn(cin, cout, 1, stride)) if stride != 1 or cin != cout else nn.Identity()
        nn.init.zeros_(self.body[-1].weight)  # zero-init residual branch (FLAX example)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class _Basic(_Bottleneck):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        nn.Module.__init__(self)
        self.body = nn.Sequential(*_conv_bn(cin, width, 3, stride), nn.ReLU(inplace=True), *_conv_bn(width, width, 3))
        self.skip = nn.Sequential(*_conv_bn(cin, width, 1, stride)) if stride != 1 or cin != width else nn.Identity()
        nn.init.zeros_(self.body[-1].weight)


def resnet(block: type, layers: list[int], classes: int, stem: int = 64) -> nn.Sequential:
    """ResNet v1.5: 7x7/2 stem, max-pool, four stages of ``layers`` blocks, global pool, dense."""
    mods: list[nn.Module] = [*_conv_bn(3, stem, 7, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    cin = stem
    for i, n in enumerate(layers):
        width = stem * 2**i
        for j in range(n):
            mods.append(block(cin, width, 2 if (i > 0 and j == 0) else 1))
            cin = width * block.expansion
    mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    net = nn.Sequential(*mods)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


# ----------------------------------------------------------------------------- MLP-Mixer
class _MixerBlock(nn.Module):
    def __init__(self, tokens: int, dim: int, token_mlp: int, channel_mlp: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.tok = nn.Sequential(nn.Linear(tokens, token_mlp), nn.GELU(), nn.Linear(token_mlp, tokens))
        self.chan = nn.Sequential(nn.Linear(dim, channel_mlp), nn.GELU(), nn.Linear(channel_mlp, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, tokens, dim)
        x = x + self.tok(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.chan(self.norm2(x))


class Mixer(nn.Module):
    """MLP-Mixer: non-overlapping patches -> per-patch linear embedding -> mixer blocks -> mean -> dense."""

    def __init__(self, patch: int, dim: int, depth: int, token_mlp: int, channel_mlp: int, classes: int,
                 image_size: int = 224):
        super().__init__()
        tokens = (image_size // patch) ** 2
        self.stem = nn.Conv2d(3, dim, patch, patch)
        self.blocks = nn.Sequential(*[_MixerBlock(tokens, dim, token_mlp, channel_mlp) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)
        nn.init.zeros_(self.head.weight)  # as the reference implementation
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x).flatten(2).transpose(1, 2)
        return self.head(self.norm(self.blocks(x)).mean(1))


# ----------------------------------------------------------------------------- EfficientNet
def _divisible(v: float, d: int = 8) -> int:
    new = max(d, int(v + d / 2) // d * d)
    return new + d if new < 0.9 * v else new


class _MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int, drop_path: float):
        super().__init__()
        mid = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*_conv_bn(cin, mid, 1, eps=1e-3), nn.SiLU(inplace=True)]
        layers += [*_conv_bn(mid, mid, k, stride, groups=mid, eps=1e-3), nn.SiLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        sq = max(1, cin // 4)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(mid, sq, 1), nn.SiLU(inplace=True),
                                nn.Conv2d(sq, mid, 1), nn.Sigmoid())
        self.project = nn.Sequential(*_conv_bn(mid, cout, 1, eps=1e-3))
        self.residual = stride == 1 and cin == cout
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        h = self.project(h * self.se(h))
        if not self.residual:
            return h
        if self.training and self.drop_path > 0:  # stochastic depth, per sample
            keep = 1 - self.drop_path
            mask = torch.empty(h.shape[0], 1, 1, 1, device=h.device, dtype=h.dtype).bernoulli_(keep)
            h = h * mask / keep
        return x + h


# (expand, kernel, stride, in, out, repeats) of B0
_EFFNET_B0 = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
              (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]
# (width multiplier, depth multiplier, dropout) of B0..B7 (Tan & Le 2019); resolutions in the registry
EFFNET_SCALES = {0: (1.0, 1.0, 0.2), 1: (1.0, 1.1, 0.2), 2: (1.1, 1.2, 0.3), 3: (1.2, 1.4, 0.3),
                 4: (1.4, 1.8, 0.4), 5: (1.6, 2.2, 0.4), 6: (1.8, 2.6, 0.5), 7: (2.0, 3.1, 0.5)}


def efficientnet(b: int, classes: int, stochastic_depth: float = 0.2) -> nn.Sequential:
    """EfficientNet-B<b>: compound-scaled MBConv stages with squeeze-excitation and SiLU."""
    wm, dm, dropout = EFFNET_SCALES[b]
    stages = [(e, k, s, _divisible(i * wm), _divisible(o * wm), int(math.ceil(n * dm))) for e, k, s, i, o, n in _EFFNET_B0]
    total, idx = sum(s[-1] for s in stages), 0
    mods: list[nn.Module] = [*_conv_bn(3, stages[0][3], 3, 2, eps=1e-3), nn.SiLU(inplace=True)]
    for e, k, s, cin, cout, n in stages:
        for j in range(n):
            mods.append(_MBConv(cin if j == 0 else cout, cout, k, s if j == 0 else 1, e, stochastic_depth * idx / total))
            idx += 1
    head = 4 * stages[-1][4]
    mods += [*_conv_bn(stages[-1][4], head, 1, eps=1e-3), nn.SiLU(inplace=True), nn.AdaptiveAvgPool2d(1),
             nn.Flatten(), nn.Dropout(dropout), nn.Linear(head, classes)]
    net = nn.Sequential(*mods)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            r = 1.0 / math.sqrt(m.out_features)
            nn.init.uniform_(m.weight, -r, r)
            nn.init.zeros_(m.bias)
    return net


# ----------------------------------------------------------------------------- builders
def _builders() -> dict[str, Callable[[int, int], nn.Module]]:
    """(classes, image size) -> module, for every id of synsym.imagenet.registry."""
    res = {18: (_Basic, [2, 2, 2, 2]), 34: (_Basic, [3, 4, 6, 3]), 50: (_Bottleneck, [3, 4, 6, 3]),
           101: (_Bottleneck, [3, 4, 23, 3]), 152: (_Bottleneck, [3, 8, 36, 3]), 200: (_Bottleneck, [3, 24, 36, 3])}
    reg: dict[str, Callable[[int, int], nn.Module]] = {
        f"resnet{n}": (lambda c, s, b=blk, ls=layers: resnet(b, ls, c)) for n, (blk, layers) in res.items()}
    reg["mixer_s16"] = lambda c, s: Mixer(16, 512, 8, 256, 2048, c, s)
    reg["mixer_b16"] = lambda c, s: Mixer(16, 768, 12, 384, 3072, c, s)
    for b in EFFNET_SCALES:
        reg[f"efficientnet_b{b}"] = lambda c, s, b=b: efficientnet(b, c)
    reg["resnet_tiny"] = lambda c, s: resnet(_Basic, [1, 1], c, stem=8)
    reg["mixer_tiny"] = lambda c, s: Mixer(8, 16, 2, 8, 32, c, s)
    return reg


BUILDERS = _builders()


def build(model_id: str, classes: int, image_size: int | None = None) -> nn.Module:
    """A freshly initialised model (torch's global RNG: seed it first). Only the Mixer's
    token count depends on ``image_size`` (default: the model's native resolution)."""
    m = get(model_id)
    return BUILDERS[m.id](classes, image_size or m.resolution)


def forward_macs(model: nn.Module, image_size: int) -> int:
    """Multiply-accumulates of one forward pass on one image (convolutions and dense layers),
    counted from the layers' output shapes: the unit of the published "GFLOPs" of these models."""
    macs = 0

    def hook(mod: nn.Module, inp, out) -> None:
        nonlocal macs
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            macs += k * out.numel()
        elif isinstance(mod, nn.Linear):
            macs += mod.in_features * out.numel()

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, image_size, image_size))
    model.train(was)
    for h in hooks:
        h.remove()
    return macs
