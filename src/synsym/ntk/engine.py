"""One dispatcher over the recursion's implementations: the exact NNGP/NTK of the FCN and
conv families for a block of image pairs, computed by whichever implementation runs on the
device (pick_impl): the fused C++ kernel on the CPU (``fused_cpu``), the fused Triton kernel
on a GPU (``fused_triton``), eager torch ops (``eager``, the reference of both) where neither
is available or ``SYNSYM_FUSED=0``.
"""

from __future__ import annotations

import inspect
import os
import sys

import torch

from synsym.core.architectures import SIGMA_B2, SIGMA_W2, check_padding
from synsym.ntk.eager import CONV_MEMBERS, _at_offsets, _pixel_scales, conv_stack, fcn_block, offset_layout, readout_weights
from synsym.ntk.fused_cpu import _FUSED, fused_kernel

__all__ = ["CONV_MEMBERS", "IMPLS", "backend", "block_fn", "conv_block", "fcn_block", "flops_per_entry", "fused_kernel",
           "pick_impl", "readout_weights", "triton_kernel"]

IMPLS = ("cpu", "triton", "eager")


def pick_impl(device: torch.device | str) -> str:
    """Which implementation of the layers runs on ``device``: the fused C++ kernel on
    the CPU, the fused Triton kernel on a GPU, eager torch
    when neither is available or ``SYNSYM_FUSED=0`` (the reference)."""
    if os.environ.get("SYNSYM_FUSED", "1") == "0":
        return "eager"
    if torch.device(device).type == "cpu":
        return "cpu" if fused_kernel() is not None else "eager"
    return "triton" if triton_kernel() is not None else "eager"


def _padding_kw(conv_stack, padding: str) -> dict:
    """``padding=`` for a Triton conv_stack; earlier kernels (bench/history.py) predate it and are circular only."""
    if "padding" in inspect.signature(conv_stack).parameters:
        return {"padding": padding}
    if padding != "circular":
        raise RuntimeError(f"this Triton kernel has no {padding} padding (an earlier kernel, bench/history.py)")
    return {}


def conv_block(
    x1: torch.Tensor,
    x2: torch.Tensor | None,
    depth: int,
    weights: torch.Tensor | None = None,
    impl: str | None = None,
    *,
    padding: str,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{arch: (nngp, ntk)} of the conv family for images x1 (n1, s, s, C) and x2 (n2, s, s, C).

    ``x2=None`` means x2 is x1 and its diagonal is exact. ``impl``: ``cpu``
    (fused C++ kernel), ``triton`` (fused Triton kernel; on CPU tensors it runs in
    Triton's interpreter), ``eager`` (torch ops, the reference), or None to pick
    by device (:func:`pick_impl`). ``padding``: ``circular`` or ``zero`` (neural-tangents' SAME);
    ``weights`` must then come from readout_weights with the same padding.
    """
    check_padding(padding)
    impl = pick_impl(x1.device) if impl is None else impl
    if impl not in IMPLS:
        raise ValueError(f"unknown engine implementation {impl!r}; allowed: {', '.join(IMPLS)}")
    sym = x2 is None
    x2 = x1 if sym else x2
    n1, s, _, c = x1.shape
    n2, d = x2.shape[0], s * s
    idx, valid = offset_layout(s, x1.device, padding)  # idx[a, delta] = pixel a + delta
    big = idx.shape[1]
    f1, f2 = x1.reshape(n1, d, c), x2.reshape(n2, d, c)
    sv1 = _pixel_scales((f1 * f1).sum(-1).reshape(n1, s, s) / c, depth, padding)
    sv2 = _pixel_scales((f2 * f2).sum(-1).reshape(n2, s, s) / c, depth, padding)
    # readouts in float64 whatever the recursion's dtype: a float32 recursion's sums over the
    # s^4 (a, delta) elements are the float32 mode's largest rounding otherwise
    w = readout_weights(s, torch.float64, x1.device, padding) if weights is None else weights
    w_da = w.reshape(d, big, -1).transpose(0, 1)  # (delta, a, readout)
    if impl == "cpu":
        kernel = fused_kernel()
        if kernel is None or x1.device.type != "cpu":
            raise RuntimeError(f"fused CPU kernel unavailable: {_FUSED.get('why', 'inputs not on the CPU')}")
    if impl == "cpu" and padding == "zero":
        pk, pt = kernel.conv_stack_zero(
            f1 / c, f2, sv1.reshape(depth, n1, d), sv2.reshape(depth, n2, d), w_da, sym, SIGMA_W2, SIGMA_B2
        )
        pk, pt = pk.reshape(n1 * n2, -1), pt.reshape(n1 * n2, -1)
    elif impl == "cpu":
        f2g = f2[:, idx.t()]  # (n2, delta, a, C): x2 at pixel a + delta
        pk, pt = kernel.conv_stack(
            f1 / c, f2g, sv1.reshape(depth, n1, d), _at_offsets(sv2, padding).reshape(depth, n2, d, d),
            w_da, sym, SIGMA_W2, SIGMA_B2,
        )
        pk, pt = pk.reshape(n1 * n2, -1), pt.reshape(n1 * n2, -1)
    elif impl == "triton":
        mod = triton_kernel()
        if mod is None:
            raise RuntimeError(f"fused Triton kernel unavailable: {_TRITON.get('why')}")
        pk, pt = mod.conv_stack(
            f1 / c, f2, sv1.reshape(depth, n1, d), sv2.reshape(depth, n2, d), w_da, sym, SIGMA_W2, SIGMA_B2,
            **_padding_kw(mod.conv_stack, padding),
        )
    else:
        scales = list(zip(sv1, _at_offsets(sv2, padding)))
        pk, pt = conv_stack(f1, f2, idx, scales, sym, w, None if padding == "circular" else valid)
    out = {}
    for r, arch in enumerate(CONV_MEMBERS):
        nngp = SIGMA_W2 * pk[:, r].reshape(n1, n2) + SIGMA_B2
        out[arch] = (nngp, nngp + SIGMA_W2 * pt[:, r].reshape(n1, n2))
    return out


_TRITON: dict = {}


def triton_kernel():
    """The fused Triton kernel module (synsym.ntk.fused_triton), or None if Triton is missing.

    Without CUDA the module switches Triton's interpreter on, so the same kernel
    runs (slowly) on CPU tensors: that is how CI checks it against the eager path."""
    if "mod" not in _TRITON and "tensorflow" in sys.modules and "triton" not in sys.modules:
        # Triton's LLVM loaded after TensorFlow's aborts the process (see synsym._llvm_first)
        _TRITON.update(mod=None, why="TensorFlow (neural-tangents) was loaded before Triton in this process")
    if "mod" not in _TRITON:
        try:
            from synsym.ntk import fused_triton

            _TRITON["mod"] = fused_triton
        except Exception as e:  # no triton wheel for this platform, ...
            _TRITON["mod"] = None
            _TRITON["why"] = f"{type(e).__name__}: {e}"
            print(f"synsym.ntk: fused Triton kernel unavailable ({_TRITON['why']}); using eager torch", file=sys.stderr)
    return _TRITON["mod"]


def block_fn(family: str, depth: int, image_size: int, device: str, dtype: torch.dtype, padding: str):
    """(x1, x2=None) -> {arch: (nngp, ntk)} as numpy, matching kernels.family_block_fn. ``dtype`` is
    the recursion's (kernels.precision); the conv readouts are summed in float64 either way."""
    check_padding(padding)
    w = readout_weights(image_size, torch.float64, device, padding) if family == "conv" else None

    def fn(x1, x2=None):
        t1 = torch.as_tensor(x1, dtype=dtype, device=device)
        t2 = None if x2 is None else torch.as_tensor(x2, dtype=dtype, device=device)
        with torch.no_grad():
            res = conv_block(t1, t2, depth, w, padding=padding) if family == "conv" else fcn_block(t1, t2, depth)
        return {a: (n.cpu().numpy(), t.cpu().numpy()) for a, (n, t) in res.items()}

    if family not in ("conv", "fcn"):
        raise ValueError(f"unknown kernel family {family!r}; allowed: fcn, conv")
    return fn


def flops_per_entry(s: int, depth: int) -> float:
    """Our count for one image pair of s x s images through the conv-family recursion: per layer and
    (a, delta) element, 2 box filters (9 adds + 1 scale each, plus bias/sum) ~ 24, the arc-cosine
    map ~ 20 (clamp, divide, sqrt, arccos as one, 1 - c^2, sqrt, 5 mul/add) and the NTK product 3:
    ~47 flops; the input covariance and the readouts add 6 + 8 per element once."""
    return (s * s) ** 2 * (47 * depth + 14)


def backend(device: str) -> str:
    """Which implementation conv_block uses on ``device``, for job logs."""
    impl = pick_impl(device)
    if impl == "cpu":
        return f"fused CPU kernel (x86-64 {_FUSED['tag']})"
    if impl == "triton":
        return f"fused Triton kernel on {device}"
    why = "SYNSYM_FUSED=0" if os.environ.get("SYNSYM_FUSED", "1") == "0" else (
        _FUSED.get("why") if torch.device(device).type == "cpu" else _TRITON.get("why"))
    return f"eager torch on {device} ({why})"
