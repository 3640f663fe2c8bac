"""ImageNet models of the paper's Sec. 6.2 / App. B.2, from the libraries their users trust: ResNets from
torchvision (v1.5, stride on the 3x3 conv, as the FLAX ImageNet example; ResNet-200 from torchvision's
``ResNet`` class with blocks [3, 24, 36, 3]), EfficientNet-B0..B7 and MLP-Mixer S/16 and B/16 from timm.
No pretrained weights. ``resnet_tiny`` and ``mixer_tiny`` are CPU test sizes built from the same classes.

The recipe choices that live in our code, not the libraries': the residual branches' last BN scale starts
at zero (``zero_init_residual``, the FLAX example's ``scale_init=zeros``); EfficientNet's stochastic depth
0.2 (timm's ``drop_path_rate``; its dropout per variant is timm's default); weight decay on kernels only
(synsym.imagenet.training); each library's own initialisation otherwise.

Models are built with plain ``nn.BatchNorm2d``; ``sync_batch_norm`` then picks how a job's
batch statistics span its processes, as the FLAX example's BatchNorm(axis_name='batch') does,
so a job on k GPUs trains the same function as one process on the whole global batch: torch's
own ``SyncBatchNorm`` under nccl, plain BN in one process, and ``SyncBN`` below under gloo
(torch's refuses CPU tensors; this is the tested CPU path of the DDP equality test).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

from synsym.imagenet.registry import EFFNET_RESOLUTIONS, get


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


# ----------------------------------------------------------------------------- builders
def _resnet(block: str, layers: list[int]) -> Callable[[int, int], nn.Module]:
    def build(classes: int, size: int) -> nn.Module:
        from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

        return ResNet(BasicBlock if block == "basic" else Bottleneck, layers, num_classes=classes, zero_init_residual=True)

    return build


def _timm(name: str, **kw) -> Callable[[int, int], nn.Module]:
    def build(classes: int, size: int) -> nn.Module:
        import timm

        extra = {"img_size": size} if name.startswith("mixer") else {}
        return timm.create_model(name, pretrained=False, num_classes=classes, **extra, **kw)

    return build


def _mixer_tiny(classes: int, size: int) -> nn.Module:
    from timm.models.mlp_mixer import MlpMixer

    return MlpMixer(num_classes=classes, img_size=size, patch_size=8, num_blocks=2, embed_dim=16)


RESNET_LAYERS = {18: ("basic", [2, 2, 2, 2]), 34: ("basic", [3, 4, 6, 3]), 50: ("bottleneck", [3, 4, 6, 3]),
                 101: ("bottleneck", [3, 4, 23, 3]), 152: ("bottleneck", [3, 8, 36, 3]),
                 200: ("bottleneck", [3, 24, 36, 3])}
BUILDERS: dict[str, Callable[[int, int], nn.Module]] = {
    **{f"resnet{n}": _resnet(*spec) for n, spec in RESNET_LAYERS.items()},
    "mixer_s16": _timm("mixer_s16_224"),
    "mixer_b16": _timm("mixer_b16_224"),
    **{f"efficientnet_b{b}": _timm(f"efficientnet_b{b}", drop_path_rate=0.2) for b in EFFNET_RESOLUTIONS},
    "resnet_tiny": _resnet("basic", [1, 1, 1, 1]),
    "mixer_tiny": _mixer_tiny,
}


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
