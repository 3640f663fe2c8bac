"""Finite-width networks in torch, with the seeds of a cell stacked.

Parameters are a dict of tensors whose leading axis indexes seeds, and
``apply`` maps images (S, B, H, W, 3) to logits (S, B, 10): every seed trains
in the same kernels (grouped convolutions, batched einsums) instead of one
process per seed. The hyperparameters come from :mod:`synsym.core.architectures`,
the same table the kernels read.

NTK parameterization: a layer computes sigma_w / sqrt(fan_in) * (x . w) +
sigma_b * b with w, b ~ N(0, 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from synsym.core.architectures import FILTER, N_CLASSES, SIGMA_B2, SIGMA_W2, ArchSpec, check_padding, readout_positions
from synsym.core.seeding import rng
from synsym.core.transforms import Transform

SW, SB = math.sqrt(SIGMA_W2), math.sqrt(SIGMA_B2)
K2 = FILTER * FILTER


@dataclass(frozen=True)
class Speed:
    """How the stacked seeds' convolutions run: each choice computes the same function (tests compare
    them in float64 to 1e-10), only the kernels differ. Set per job from the config's training section
    (``speed``); the defaults are the measured best on CPU.

    conv: ``grouped`` (one grouped conv, groups = seeds) or ``per_seed`` (one conv per seed, which
    cuDNN may run faster than a grouped conv with few wide groups).
    channels_last: conv activations in NHWC memory (what tensor cores want on GPUs).
    """

    conv: str = "grouped"
    channels_last: bool = False


CONV_LAYOUTS = ("grouped", "per_seed")
_SPEED = Speed()


@contextmanager
def speed(**choices) -> Iterator[Speed]:
    """Run the enclosed forward passes with these Speed choices (restored on exit)."""
    global _SPEED
    new = replace(_SPEED, **choices)
    if new.conv not in CONV_LAYOUTS:
        raise ValueError(f"unknown conv layout {new.conv!r}; allowed: {', '.join(CONV_LAYOUTS)}")
    old, _SPEED = _SPEED, new
    try:
        yield new
    finally:
        _SPEED = old


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
    dtype: torch.dtype,
    device: str | torch.device,
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

    ``F.pad(mode="circular")`` is several times slower forward + backward on CPU
    (docs/measurements.md has the measurement): its backward goes through many strided slice copies.
    Here the forward is five slice copies and the backward copies the interior once
    and adds the wrapped borders and corners to it, in a fixed
    order (deterministic). Linear, so its jvp is itself
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
        # A contiguous result: a strided view here made the ReLU backward that
        # consumes it much slower.
        out = g[..., 1:-1, 1:-1].contiguous()
        out[..., 0, :] += g[..., -1, 1:-1]  # bottom pad row wraps to row 0
        out[..., -1, :] += g[..., 0, 1:-1]  # top pad row wraps to the last row
        out[..., :, 0] += g[..., 1:-1, -1]
        out[..., :, -1] += g[..., 1:-1, 0]
        out[..., 0, 0] += g[..., -1, -1]  # corners
        out[..., 0, -1] += g[..., -1, 0]
        out[..., -1, 0] += g[..., 0, -1]
        out[..., -1, -1] += g[..., 0, 0]
        return out


def circular_pad(x: torch.Tensor) -> torch.Tensor:
    """Pad the last two axes by one pixel, wrapping around (3x3 circular filters)."""
    assert FILTER == 3
    return _CircularPad.apply(x)


def _conv(z: torch.Tensor, w: torch.Tensor, b: torch.Tensor, padding: str) -> torch.Tensor:
    """Shared 3x3 conv (circular or zero-padded) for all seeds at once: (B, S*C, H, W) -> (B, S*n, H, W).

    One grouped conv (groups = seeds) on a batch-major layout that stays
    contiguous from layer to layer (no transposes, so the ReLU's backward runs on
    dense memory). Measured in full training steps on 2 CPU cores
    (bench/training.py, vec, 8x8): 152 seed-steps/s at width 24 against 105 for
    one channels-last conv per seed; at width 128 13 vs 14.
    """
    s, n, c = w.shape[:3]
    zp = circular_pad(z) if padding == "circular" else F.pad(z, (1, 1, 1, 1))
    if _SPEED.channels_last:
        zp = zp.contiguous(memory_format=torch.channels_last)
    if _SPEED.conv == "per_seed":
        y = torch.cat([F.conv2d(zp[:, i * c : (i + 1) * c], w[i]) for i in range(s)], dim=1)
    else:
        y = F.conv2d(zp, w.reshape(s * n, c, FILTER, FILTER), groups=s)
    return SW / math.sqrt(c * K2) * y + SB * b.reshape(1, s * n, 1, 1)


def neighbours(image_size: int, device: torch.device | str, padding: str) -> torch.Tensor:
    """nbr[p, kh * 3 + kw] = flat index of pixel p + (kh - 1, kw - 1): the 3x3 patch a local or conv
    filter tap reads (the LCN layer and the Theorem 3.1 embeddings use it). Circular wraps around;
    zero padding points taps outside the image at index s*s, a zero position the caller appends."""
    s = image_size
    i = torch.arange(s, device=device)
    off = torch.arange(FILTER, device=device) - FILTER // 2
    rows = (i[:, None, None, None] + off[None, None, :, None]).expand(s, s, FILTER, FILTER)  # (h, w, kh, kw)
    cols = (i[None, :, None, None] + off[None, None, None, :]).expand(s, s, FILTER, FILTER)
    if padding == "circular":
        return ((rows % s) * s + cols % s).reshape(s * s, K2)
    inside = (rows >= 0) & (rows < s) & (cols >= 0) & (cols < s)
    return torch.where(inside, rows * s + cols, s * s).reshape(s * s, K2)


def _patch_rows(n_seeds: int, image_size: int, device: torch.device, padding: str) -> torch.Tensor:
    """Row index into (seed, position)-flattened activations that gathers every patch:
    one index_select over that axis (on a middle axis its cost per seed grew with the
    number of seeds). Built once per forward, shared by all layers. With zero padding each
    seed's positions carry one extra zero position (index s*s) that outside taps read."""
    nbr = neighbours(image_size, device, padding)
    per_seed = image_size * image_size + (padding != "circular")
    return (torch.arange(n_seeds, device=device)[:, None] * per_seed + nbr.reshape(1, -1)).reshape(-1)


def _local(z: torch.Tensor, w: torch.Tensor, b: torch.Tensor, rows: torch.Tensor, padding: str) -> torch.Tensor:
    """Locally connected 3x3 layer on a position-major layout: (S, P, C, B) -> (S, P, n, B).

    With the batch innermost, gathering each position's 9 neighbours gives
    every (seed, position) patch matrix (9C, B) contiguously, so the layer is
    one index_select and one bmm over seeds x positions, and its output has the
    input's layout (no per-layer copies)."""
    s, p, c, bsz = z.shape
    n = w.shape[-1]
    if padding != "circular":  # rows (_patch_rows) index s x (p + 1) positions, the last one zero
        z = F.pad(z, (0, 0, 0, 0, 0, 1))
    patches = z.reshape(-1, c, bsz).index_select(0, rows).reshape(s * p, K2 * c, bsz)  # rows (k, c)
    wt = w.reshape(s, p, c, K2, n).permute(0, 1, 4, 3, 2).reshape(s * p, n, K2 * c)  # weights stored (c, k)
    y = torch.bmm(wt, patches).reshape(s, p, n, bsz)
    return SW / math.sqrt(c * K2) * y + SB * b[..., None]


def features(spec: ArchSpec, params: dict[str, torch.Tensor], x: torch.Tensor, depth: int) -> torch.Tensor:
    """Penultimate features (S, B, n*positions) after the readout's pooling."""
    s, bsz, h = x.shape[:3]
    if spec.body == "dense":
        z = x.reshape(s, bsz, -1)
        for layer in range(1, depth + 1):
            w, b = params[f"w{layer}"], params[f"b{layer}"]
            z = torch.relu(SW / math.sqrt(w.shape[1]) * torch.bmm(z, w) + SB * b[:, None])
        return z
    check_padding(spec.padding)  # a spec from the table alone has none (architectures.get(arch, padding))
    if spec.body == "local":
        rows = _patch_rows(s, h, x.device, spec.padding)
        z = x.reshape(s, bsz, h * h, -1).permute(0, 2, 3, 1).contiguous()  # (S, P, C, B)
        for layer in range(1, depth + 1):
            z = torch.relu(_local(z, params[f"w{layer}"], params[f"b{layer}"], rows, spec.padding))
        return z.permute(0, 3, 2, 1).reshape(s, bsz, -1)  # flatten readout, (n, position) order
    z = x.permute(1, 0, 4, 2, 3).reshape(bsz, -1, h, h)  # (B, S*C, H, W)
    for layer in range(1, depth + 1):
        z = torch.relu(_conv(z, params[f"w{layer}"], params[f"b{layer}"], spec.padding))
    z = z.reshape(bsz, s, -1, h, h).transpose(0, 1)  # (S, B, n, H, W)
    if spec.readout == "gap":
        z = z.mean(dim=(3, 4))
    elif spec.readout == "lap":
        n = z.shape[2]
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


def forward_flops(spec: ArchSpec, width: int, depth: int, image_size: int) -> int:
    """Multiply-adds x 2 of one image's forward pass (direct convolution, no Winograd);
    counted by hand because torch's FlopCounterMode ignores conv groups."""
    s = image_size
    shapes = param_shapes(spec, width, depth, s)
    fwd = 0
    for layer in range(1, depth + 1):
        w = shapes[f"w{layer}"]
        if spec.body == "dense":
            fwd += 2 * w[0] * w[1]
        elif spec.body == "conv":
            fwd += 2 * s * s * w[0] * w[1] * w[2] * w[3]
        else:
            fwd += 2 * w[0] * w[1] * w[2]
    return fwd + 2 * shapes["w_out"][0] * shapes["w_out"][1]
