"""Finite-width networks in torch, with the seeds of a cell stacked.

Parameters are a dict of tensors whose leading axis indexes seeds, and
``apply`` maps images (S, B, H, W, 3) to logits (S, B, 10): every seed trains
in the same kernels (grouped convolutions, batched einsums) instead of one
process per seed. The hyperparameters come from :mod:`synsym.architectures`,
the same table the kernels read.

NTK parameterization: a layer computes sigma_w / sqrt(fan_in) * (x . w) +
sigma_b * b with w, b ~ N(0, 1).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from synsym.architectures import FILTER, N_CLASSES, SIGMA_B2, SIGMA_W2, ArchSpec, readout_positions
from synsym.seeding import rng
from synsym.transforms import Transform

SW, SB = math.sqrt(SIGMA_W2), math.sqrt(SIGMA_B2)
K2 = FILTER * FILTER


def param_shapes(spec: ArchSpec, width: int, depth: int, image_size: int) -> dict[str, tuple[int, ...]]:
    """Shapes of one seed's parameters, in init order."""
    d = image_size * image_size
    shapes: dict[str, tuple[int, ...]] = {}
    c_in = 3
    for layer in range(1, depth + 1):
        if spec.body == "dense":
            fan_in = 3 * d if layer == 1 else width
            shapes[f"w{layer}"] = (fan_in, width)
            shapes[f"b{layer}"] = (width,)
        elif spec.body == "conv":
            shapes[f"w{layer}"] = (width, c_in, FILTER, FILTER)
            shapes[f"b{layer}"] = (width,)
        else:  # local: unshared filters and biases per position
            shapes[f"w{layer}"] = (d, c_in * K2, width)
            shapes[f"b{layer}"] = (d, width)
        c_in = width
    shapes["w_out"] = (width * readout_positions(spec, image_size), N_CLASSES)
    shapes["b_out"] = (N_CLASSES,)
    return shapes


def init_params(
    spec: ArchSpec,
    width: int,
    depth: int,
    image_size: int,
    seeds: list[int],
    global_seed: int,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    first_layer: str = "gaussian",
) -> dict[str, torch.Tensor]:
    """Stacked N(0, 1) parameters, one slice per seed.

    Each seed's draw depends only on (global seed, seed, architecture, width),
    not on the inference algorithm, so NN and NN+ of a seed start together.
    ``first_layer='uniform'`` draws the first layer's weights from the
    variance-matched U(-sqrt 3, sqrt 3) (Fig. S5).
    """
    if first_layer not in ("gaussian", "uniform"):
        raise ValueError(f"unknown first-layer init {first_layer!r}; allowed: gaussian, uniform")
    shapes = param_shapes(spec, width, depth, image_size)
    stacked: dict[str, list[np.ndarray]] = {k: [] for k in shapes}
    for seed in seeds:
        gen = rng(global_seed, seed, "init", spec.id, width)
        for name, shape in shapes.items():
            if name == "w1" and first_layer == "uniform":
                stacked[name].append(gen.uniform(-math.sqrt(3), math.sqrt(3), shape))
            else:
                stacked[name].append(gen.standard_normal(shape))
    return {k: torch.tensor(np.stack(v), dtype=dtype, device=device) for k, v in stacked.items()}


class _CircularPad(torch.autograd.Function):
    """Wrap-around padding by one pixel of the last two axes, with a hand-written backward.

    ``F.pad(mode="circular")`` costs ~4x more forward + backward on CPU (1.7 vs
    0.4 ms for a (40, 120, 8, 8) batch): its backward goes through many strided
    slice copies. Here the forward is five slice copies and the backward folds
    the four borders back in place, in a fixed order (deterministic). Linear, so its jvp is itself
    (``torch.func.jvp`` in the lambda_max power iteration)."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        h, w = x.shape[-2:]
        out = x.new_empty(*x.shape[:-2], h + 2, w + 2)
        out[..., 1:-1, 1:-1] = x
        out[..., 1:-1, 0] = x[..., :, -1]
        out[..., 1:-1, -1] = x[..., :, 0]
        out[..., 0, :] = out[..., -2, :]
        out[..., -1, :] = out[..., 1, :]
        return out

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # nothing to save: the map is linear
        pass

    @staticmethod
    def jvp(ctx, t: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _CircularPad.forward(t)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        g = g.clone()
        g[..., 1, :] += g[..., -1, :]
        g[..., -2, :] += g[..., 0, :]
        g[..., 1:-1, 1] += g[..., 1:-1, -1]
        g[..., 1:-1, -2] += g[..., 1:-1, 0]
        return g[..., 1:-1, 1:-1]


def circular_pad(x: torch.Tensor) -> torch.Tensor:
    """Pad the last two axes by one pixel, wrapping around (3x3 circular filters)."""
    assert FILTER == 3
    return _CircularPad.apply(x)


def _conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Shared 3x3 circular conv for all seeds at once: (S,B,C,H,W) -> (S,B,n,H,W).

    One grouped conv (groups = seeds). Measured in full training steps on 2 CPU
    cores (bench/training.py, vec, 8x8): 152 seed-steps/s at width 24 against 105
    for one channels-last conv per seed; at width 128 13 vs 14.
    """
    s, bsz, c, h, wd = x.shape
    n = w.shape[1]
    y = F.conv2d(
        circular_pad(x.transpose(0, 1).reshape(bsz, s * c, h, wd)),
        w.reshape(s * n, c, FILTER, FILTER),
        groups=s,
    )
    y = y.reshape(bsz, s, n, h, wd).transpose(0, 1)
    return SW / math.sqrt(c * K2) * y + SB * b[:, None, :, None, None]


def _local(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Locally connected 3x3 layer: unfold patches, one batched einsum over positions."""
    s, bsz, c, h, wd = x.shape
    patches = F.unfold(circular_pad(x.reshape(s * bsz, c, h, wd)), FILTER)  # (SB, C*9, HW)
    patches = patches.reshape(s, bsz, c * K2, h * wd)
    y = torch.einsum("sbkp,spkn->sbnp", patches, w)
    y = SW / math.sqrt(c * K2) * y + SB * b.transpose(1, 2)[:, None]
    return y.reshape(s, bsz, -1, h, wd)


def features(spec: ArchSpec, params: dict[str, torch.Tensor], x: torch.Tensor, depth: int) -> torch.Tensor:
    """Penultimate features (S, B, n*positions) after the readout's pooling."""
    s, bsz = x.shape[:2]
    if spec.body == "dense":
        z = x.reshape(s, bsz, -1)
        for layer in range(1, depth + 1):
            w, b = params[f"w{layer}"], params[f"b{layer}"]
            z = torch.relu(SW / math.sqrt(w.shape[1]) * torch.bmm(z, w) + SB * b[:, None])
        return z
    z = x.permute(0, 1, 4, 2, 3)  # (S, B, C, H, W)
    layer_fn = _conv if spec.body == "conv" else _local
    for layer in range(1, depth + 1):
        z = torch.relu(layer_fn(z, params[f"w{layer}"], params[f"b{layer}"]))
    if spec.readout == "gap":
        z = z.mean(dim=(3, 4))
    elif spec.readout == "lap":
        n, h = z.shape[2], z.shape[3]
        z = F.avg_pool2d(z.reshape(s * bsz, n, h, h), spec.pool).reshape(s, bsz, n, -1)
    return z.reshape(s, bsz, -1)


def apply(spec: ArchSpec, params: dict[str, torch.Tensor], x: torch.Tensor, depth: int) -> torch.Tensor:
    """Logits (S, B, 10) for stacked parameters and per-seed images (S, B, H, W, 3)."""
    z = features(spec, params, x, depth)
    w = params["w_out"]
    return SW / math.sqrt(w.shape[1]) * torch.bmm(z, w) + SB * params["b_out"][:, None]


class NotRepresentable(ValueError):
    """The transform cannot be moved into this architecture's first layer."""


def couple_first_layer(
    spec: ArchSpec, params: dict[str, torch.Tensor], transform: Transform, image_size: int
) -> dict[str, torch.Tensor]:
    """theta_tau = tau^* theta_0 (paper App. D): a net on D that mirrors one on tau D.

    If f(tau x; theta) is the network on transformed inputs, then
    f(x; theta_tau) is the same function, step by step through training, when
    tau lies in the architecture's symmetry group. Raises NotRepresentable
    when tau is not in a group the first layer can absorb.
    """
    out = dict(params)
    w = params["w1"]
    s = image_size
    if spec.body == "dense":
        m = torch.as_tensor(transform.matrix(s, s), dtype=w.dtype, device=w.device)
        out["w1"] = torch.einsum("ij,sin->sjn", m, w)  # M^T w
        return out
    if transform.id == "identity":
        return out
    if transform.pixel is None:
        raise NotRepresentable(f"{transform.id} is not a per-pixel rotation; {spec.id} cannot absorb it")
    q = torch.as_tensor(transform.pixel, dtype=w.dtype, device=w.device)  # (H, W, 3, 3)
    if spec.body == "conv":
        if not torch.allclose(q, q[0, 0].expand_as(q), atol=0, rtol=0):
            raise NotRepresentable(f"{transform.id} rotates pixels differently; shared filters cannot absorb it")
        out["w1"] = torch.einsum("ci,soc...->soi...", q[0, 0], w)
        return out
    # local: weight at (position a, offset beta, channel c) sees pixel a+beta.
    pad = FILTER // 2
    w6 = w.reshape(w.shape[0], s, s, 3, FILTER, FILTER, -1)
    new = torch.empty_like(w6)
    for kh in range(FILTER):
        for kw in range(FILTER):
            qs = torch.roll(q, shifts=(pad - kh, pad - kw), dims=(0, 1))  # q[a+beta]
            new[:, :, :, :, kh, kw] = torch.einsum("hwci,shwcn->shwin", qs, w6[:, :, :, :, kh, kw])
    out["w1"] = new.reshape(w.shape)
    return out


def n_params(params: dict[str, torch.Tensor]) -> int:
    """Parameters of one seed."""
    return sum(p[0].numel() for p in params.values())
