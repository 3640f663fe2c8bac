"""A fast exact NNGP/NTK engine for the FCN and conv families, in torch.

The conv family's kernel lives on pixel pairs. We store it as K[pair, a, delta]
with b = a + delta (circular), because then a stride-1 circular conv layer,
K'(a, b) = mean_beta K(a + beta, b + beta), is a plain 3x3 circular box filter
over a at fixed delta. The ReLU (arc-cosine) map is pointwise in (a, delta) and
needs only the pixel variances K(x_a, x_a), which follow their own cheap
recursion, so no pixel-pair self-covariance is ever formed. Every readout is a
fixed weighting of (a, delta): one pass serves Flatten (VEC, LCN),
GlobalAvgPool (GAP) and AvgPool k (LAP4, LAP8).

Three implementations of the layers, picked by device (pick_impl): on the
CPU a fused C++ kernel (fused_cpu.cpp) runs all layers of one (pair, delta)
slice in L1 cache and keeps only the readouts, since slices never interact; on
a GPU the fused Triton kernel (fused_triton.py) does the same in registers;
eager torch ops on whole blocks are the reference of both (SYNSYM_FUSED=0).

Exactness: the diagonal K(x, x) is computed with correlation exactly 1 (theta
= 0), so unlike an arccos of a rounded 1 it is well conditioned; results
match neural-tangents to float64 rounding off the diagonal.
"""

from __future__ import annotations

import math
import os
import platform
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from synsym.architectures import ARCHITECTURES, SIGMA_B2, SIGMA_W2

CONV_MEMBERS = ("vec", "gap", "lap4", "lap8")


def _relu(k: torch.Tensor, q: torch.Tensor, ntk: torch.Tensor, exact_diag: torch.Tensor | None):
    """Arc-cosine maps, in place on k and ntk: E[relu(u) relu(v)] = q/2pi (sin t + (pi - t) cos t)
    and E[relu'(u) relu'(v)] = (pi - t)/2pi for covariance k, q = sqrt(var1 var2), cos t = k/q."""
    c = k.div_(q).clamp_(-1.0, 1.0)
    if exact_diag is not None:
        c.masked_fill_(exact_diag, 1.0)
    pi_minus = torch.arccos(c).neg_().add_(math.pi)
    sin = (c * c).neg_().add_(1.0).clamp_(min=0.0).sqrt_()
    new_k = sin.addcmul_(pi_minus, c).mul_(q).mul_(1 / (2 * math.pi))
    new_ntk = ntk.mul_(pi_minus).mul_(1 / (2 * math.pi))
    return new_k, new_ntk


def _conv(k: torch.Tensor, s: int, add: torch.Tensor | float) -> torch.Tensor:
    """sigma_w^2 * (circular 3x3 mean over the image axes of (..., H, W)) + add.

    Separable: three shifted views summed along H, then along W (4 adds;
    avg_pool2d is several times slower on CPU in float64)."""
    shape = k.shape
    x = F.pad(k.reshape(-1, 1, s, s), (1, 1, 1, 1), mode="circular")
    x = x[:, :, 0:s] + x[:, :, 1 : s + 1] + x[:, :, 2 : s + 2]
    x = x[..., 0:s] + x[..., 1 : s + 1] + x[..., 2 : s + 2]
    return x.reshape(shape).mul_(SIGMA_W2 / 9).add_(add)


def _offset_index(s: int, device) -> torch.Tensor:
    """idx[a, delta] = flat index of pixel a + delta (circular), for a, delta in [0, s*s)."""
    h = torch.arange(s, device=device)
    ah, aw = torch.meshgrid(h, h, indexing="ij")
    dh, dw = ah.reshape(-1), aw.reshape(-1)
    bh = (ah.reshape(-1, 1) + dh.reshape(1, -1)) % s
    bw = (aw.reshape(-1, 1) + dw.reshape(1, -1)) % s
    return bh * s + bw  # (d, d)


def _window(i: torch.Tensor, s: int, p: int) -> torch.Tensor:
    """Which p x p pooling window flat pixel index i falls in."""
    return (i // s // p) * (s // p) + (i % s) // p


def readout_weights(s: int, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """W (d*d, 4): readout functionals on K[a, delta] for vec, gap, lap4, lap8."""
    d = s * s
    idx = _offset_index(s, device)
    a = torch.arange(d, device=device).reshape(-1, 1).expand(d, d)
    cols = []
    for arch in CONV_MEMBERS:
        spec = ARCHITECTURES[arch]
        if spec.readout == "flatten":
            w = torch.zeros(d, d, dtype=dtype, device=device)
            w[:, 0] = 1.0 / d
        elif spec.readout == "gap":
            w = torch.full((d, d), 1.0 / (d * d), dtype=dtype, device=device)
        else:
            same = _window(a, s, spec.pool) == _window(idx, s, spec.pool)
            w = same.to(dtype) / ((s // spec.pool) ** 2 * spec.pool**4)
        cols.append(w.reshape(-1))
    return torch.stack(cols, dim=1)


def _pixel_scales(v: torch.Tensor, depth: int) -> torch.Tensor:
    """(L, n, s, s): sqrt of the pixel variances after each layer's conv, from the
    input variances v (n, s, s); they normalize that layer's arc-cosine map."""
    s = v.shape[-1]
    out = []
    for _ in range(depth):
        v = _conv(v, s, SIGMA_B2)
        out.append(torch.sqrt(v))
        v = v / 2
    return torch.stack(out)


def _at_offsets(r: torch.Tensor) -> torch.Tensor:
    """(L, n, s, s) per-pixel values -> (L, n, delta, s, s): the value at b = a + delta,
    laid out like K[pair, delta, a]."""
    depth, n, s, _ = r.shape
    d = s * s
    gather_b = _offset_index(s, r.device).t().reshape(1, d, d)
    r2 = r.reshape(depth * n, 1, d).expand(-1, d, d)
    return torch.gather(r2, 2, gather_b.expand(depth * n, d, d)).reshape(depth, n, d, s, s)


IMPLS = ("cpu", "triton", "eager")


def pick_impl(device: torch.device | str) -> str:
    """Which implementation of the layers runs on ``device``: the fused C++ kernel on
    the CPU, the fused Triton kernel on a GPU, eager torch when neither is available
    or ``SYNSYM_FUSED=0`` (the reference)."""
    if os.environ.get("SYNSYM_FUSED", "1") == "0":
        return "eager"
    if torch.device(device).type == "cpu":
        return "cpu" if fused_kernel() is not None else "eager"
    return "triton" if triton_kernel() is not None else "eager"


def conv_block(
    x1: torch.Tensor,
    x2: torch.Tensor | None,
    depth: int,
    weights: torch.Tensor | None = None,
    impl: str | None = None,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{arch: (nngp, ntk)} of the conv family for images x1 (n1, s, s, C) and x2 (n2, s, s, C).

    ``x2=None`` means x2 is x1 and its diagonal is exact. ``impl``: ``cpu``
    (fused C++ kernel), ``triton`` (fused Triton kernel; on CPU tensors it runs in
    Triton's interpreter), ``eager`` (torch ops, the reference), or None to pick
    by device (:func:`pick_impl`).
    """
    impl = pick_impl(x1.device) if impl is None else impl
    if impl not in IMPLS:
        raise ValueError(f"unknown engine implementation {impl!r}; allowed: {', '.join(IMPLS)}")
    sym = x2 is None
    x2 = x1 if sym else x2
    n1, s, _, c = x1.shape
    n2, d = x2.shape[0], s * s
    idx = _offset_index(s, x1.device)  # idx[a, delta] = pixel a + delta
    f1, f2 = x1.reshape(n1, d, c), x2.reshape(n2, d, c)
    sv1 = _pixel_scales((f1 * f1).sum(-1).reshape(n1, s, s) / c, depth)
    sv2 = _pixel_scales((f2 * f2).sum(-1).reshape(n2, s, s) / c, depth)
    w = readout_weights(s, x1.dtype, x1.device) if weights is None else weights
    w_da = w.reshape(d, d, -1).transpose(0, 1)  # (delta, a, readout)
    if impl == "cpu":
        kernel = fused_kernel()
        if kernel is None or x1.device.type != "cpu":
            raise RuntimeError(f"fused CPU kernel unavailable: {_FUSED.get('why', 'inputs not on the CPU')}")
        f2g = f2[:, idx.t()]  # (n2, delta, a, C): x2 at pixel a + delta
        pk, pt = kernel.conv_stack(
            f1 / c, f2g, sv1.reshape(depth, n1, d), _at_offsets(sv2).reshape(depth, n2, d, d),
            w_da, sym, SIGMA_W2, SIGMA_B2,
        )
        pk, pt = pk.reshape(n1 * n2, -1), pt.reshape(n1 * n2, -1)
    elif impl == "triton":
        mod = triton_kernel()
        if mod is None:
            raise RuntimeError(f"fused Triton kernel unavailable: {_TRITON.get('why')}")
        pk, pt = mod.conv_stack(
            f1 / c, f2, sv1.reshape(depth, n1, d), sv2.reshape(depth, n2, d), w_da, sym, SIGMA_W2, SIGMA_B2
        )
    else:
        scales = list(zip(sv1, _at_offsets(sv2)))
        pk, pt = _eager_stack(f1, f2, idx, scales, sym, w)
    out = {}
    for r, arch in enumerate(CONV_MEMBERS):
        nngp = SIGMA_W2 * pk[:, r].reshape(n1, n2) + SIGMA_B2
        out[arch] = (nngp, nngp + SIGMA_W2 * pt[:, r].reshape(n1, n2))
    return out


def _eager_stack(f1, f2, idx, scales, sym: bool, w) -> tuple[torch.Tensor, torch.Tensor]:
    """The layers in plain torch ops on K[pair, delta, a] (CUDA, and the fused kernel's reference)."""
    n1, d, c = f1.shape
    n2, s = f2.shape[0], int(round(d**0.5))
    full = torch.einsum("iac,jbc->ijab", f1, f2) / c  # (n1, n2, d, d) over (a, b)
    k = torch.gather(full, 3, idx.expand(n1, n2, d, d)).transpose(2, 3).reshape(n1, n2, d, s, s)
    del full
    # layout (n1, n2, delta, h, w): the box filter runs over a = (h, w) with delta as channels
    ntk = torch.zeros_like(k)
    exact = None
    if sym:
        exact = torch.zeros(n1, n2, d, 1, 1, dtype=torch.bool, device=f1.device)
        exact[torch.arange(n1), torch.arange(n1), 0] = True
        exact = exact.expand(n1, n2, d, s, s)
    for sv1, r2b in scales:
        k = _conv(k, s, SIGMA_B2)
        ntk = _conv(ntk, s, k)
        k, ntk = _relu(k, sv1.reshape(n1, 1, 1, s, s) * r2b.reshape(1, n2, d, s, s), ntk, exact)
    # K[pair, delta, a] -> K[pair, a, delta] to match the weights' (a, delta) order
    pk = k.permute(0, 1, 3, 4, 2).reshape(n1 * n2, d * d) @ w
    pt = ntk.permute(0, 1, 3, 4, 2).reshape(n1 * n2, d * d) @ w
    return pk, pt


# ---------------------------------------------------------------- fused CPU kernel

_FUSED: dict = {}


def _isa_flags() -> tuple[str, list[str]]:
    """The widest x86-64 level this CPU runs (v4 has AVX-512, where libmvec's acos
    is 8 doubles wide), as a build-name tag and compiler flags. Keyed into the
    extension's name so machines sharing a home directory never load a build
    their CPU cannot run."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return "generic", []
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0].split())
    except (OSError, IndexError):
        return "generic", []
    if {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"} <= flags:
        return "v4", ["-march=x86-64-v4"]
    if {"avx2", "fma", "bmi2"} <= flags:
        return "v3", ["-march=x86-64-v3"]
    return "generic", []


def _build(name: str, flags: list[str]):
    """Compile (or load the cached build of) fused_cpu.cpp under an OS file lock.

    torch's own build lock is a plain file: a build killed midway (Ctrl-C, a
    job timeout) leaves it behind and every later build waits on it forever.
    An flock dies with its process, so whoever holds ours may delete that stale
    file: nobody else can be building."""
    import fcntl

    from torch.utils.cpp_extension import get_default_build_root, load_inline

    build = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()) / name
    build.mkdir(parents=True, exist_ok=True)
    with open(build / "synsym.flock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        (build / "lock").unlink(missing_ok=True)
        return load_inline(
            name=name,
            cpp_sources=(Path(__file__).parent / "fused_cpu.cpp").read_text(),
            functions=["conv_stack"],
            extra_cflags=["-O3", "-ffast-math", "-fopenmp-simd", *flags],
            build_directory=str(build),
        )


def fused_kernel():
    """The compiled fused CPU kernel (src/synsym/fused_cpu.cpp), or None if it cannot be built.

    ``SYNSYM_FUSED=0`` in the environment forces the eager path (benchmarks,
    debugging). Built once per machine with torch's cpp_extension (needs a C++ compiler and
    ninja; ~25 s, then cached in ~/.cache/torch_extensions/<name>, or under
    $TORCH_EXTENSIONS_DIR). ``-ffast-math`` is a
    compile flag only: the shared object is not linked with crtfastmath, so
    loading it does not flush denormals for the rest of the process (tested).
    """
    if "mod" not in _FUSED and os.environ.get("SYNSYM_FUSED", "1") == "0":
        _FUSED.update(mod=None, why="SYNSYM_FUSED=0")
    if "mod" not in _FUSED:
        tag, flags = _isa_flags()
        bindir = str(Path(sys.executable).parent)  # the venv's ninja when it is not activated
        if bindir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
        try:
            _FUSED["tag"] = tag
            _FUSED["mod"] = _build(f"synsym_fused_cpu_{tag}", flags)
        except Exception as e:  # no compiler, no ninja, ...: the eager path still works
            _FUSED["mod"] = None
            _FUSED["why"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            print(f"synsym.engine: fused CPU kernel unavailable ({_FUSED['why']}); using eager torch", file=sys.stderr)
    return _FUSED["mod"]


_TRITON: dict = {}


def triton_kernel():
    """The fused Triton kernel module (synsym.fused_triton), or None if Triton is missing.

    Without CUDA the module switches Triton's interpreter on, so the same kernel
    runs (slowly) on CPU tensors: that is how CI checks it against the eager path."""
    if "mod" not in _TRITON and "tensorflow" in sys.modules and "triton" not in sys.modules:
        # Triton's LLVM loaded after TensorFlow's aborts the process (see kernels._llvm_first)
        _TRITON.update(mod=None, why="TensorFlow (neural-tangents) was loaded before Triton in this process")
    if "mod" not in _TRITON:
        try:
            from synsym import fused_triton

            _TRITON["mod"] = fused_triton
        except Exception as e:  # no triton wheel for this platform, ...
            _TRITON["mod"] = None
            _TRITON["why"] = f"{type(e).__name__}: {e}"
            print(f"synsym.engine: fused Triton kernel unavailable ({_TRITON['why']}); using eager torch", file=sys.stderr)
    return _TRITON["mod"]


def fcn_block(x1: torch.Tensor, x2: torch.Tensor | None, depth: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{fcn: (nngp, ntk)} for flattened images, the same recursion without pixels."""
    sym = x2 is None
    x2 = x1 if sym else x2
    f1, f2 = x1.reshape(len(x1), -1), x2.reshape(len(x2), -1)
    n = f1.shape[1]
    k = f1 @ f2.T / n
    v1, v2 = (f1 * f1).sum(1) / n, (f2 * f2).sum(1) / n
    ntk = torch.zeros_like(k)
    exact = torch.eye(len(f1), dtype=torch.bool, device=f1.device) if sym else None
    for _ in range(depth):
        k = SIGMA_W2 * k + SIGMA_B2
        ntk = SIGMA_W2 * ntk + k  # new tensors: _relu works in place
        v1, v2 = SIGMA_W2 * v1 + SIGMA_B2, SIGMA_W2 * v2 + SIGMA_B2
        k, ntk = _relu(k, torch.sqrt(v1[:, None] * v2[None, :]), ntk, exact)
        v1, v2 = v1 / 2, v2 / 2
    nngp = SIGMA_W2 * k + SIGMA_B2
    return {"fcn": (nngp, nngp + SIGMA_W2 * ntk)}


def block_fn(family: str, depth: int, image_size: int, device: str = "cpu", dtype=torch.float64):
    """(x1, x2=None) -> {arch: (nngp, ntk)} as numpy, matching kernels.family_block_fn."""
    w = readout_weights(image_size, dtype, device) if family == "conv" else None

    def fn(x1, x2=None):
        t1 = torch.as_tensor(x1, dtype=dtype, device=device)
        t2 = None if x2 is None else torch.as_tensor(x2, dtype=dtype, device=device)
        with torch.no_grad():
            res = conv_block(t1, t2, depth, w) if family == "conv" else fcn_block(t1, t2, depth)
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


def backend(device: str = "cpu") -> str:
    """Which implementation conv_block uses on ``device``, for job logs."""
    impl = pick_impl(device)
    if impl == "cpu":
        return f"fused CPU kernel (x86-64 {_FUSED['tag']})"
    if impl == "triton":
        return f"fused Triton kernel on {device}"
    why = "SYNSYM_FUSED=0" if os.environ.get("SYNSYM_FUSED", "1") == "0" else (
        _FUSED.get("why") if torch.device(device).type == "cpu" else _TRITON.get("why"))
    return f"eager torch on {device} ({why})"
