"""The NNGP/NTK recursion in plain torch ops: the reference that both fused kernels
(``fused_cpu``, ``fused_triton``) must equal, and the path on devices where neither runs.

The conv family's kernel lives on pixel pairs. We store it as K[pair, a, delta]
with b = a + delta (circular), because then a stride-1 circular conv layer,
K'(a, b) = mean_beta K(a + beta, b + beta), is a plain 3x3 circular box filter
over a at fixed delta. The ReLU (arc-cosine) map is pointwise in (a, delta) and
needs only the pixel variances K(x_a, x_a), which follow their own cheap
recursion, so no pixel-pair self-covariance is ever formed. Every readout is a
fixed weighting of (a, delta): one pass serves Flatten (VEC, LCN),
GlobalAvgPool (GAP) and AvgPool k (LAP4, LAP8).

Zero padding (``padding="zero"``, neural-tangents' SAME): b = a + delta may fall outside the
image, so offsets run over (2s-1)^2 and K is stored with a mask of the valid (a, delta). Entries
outside are held at 0; then a zero-padded box filter at fixed delta is again exactly one conv
layer, and the mask is reapplied after each arc-cosine map. The valid elements number s^4, as in
the circular layout; the fused C++ kernel visits only those (one rectangle of a per delta).

Exactness: the diagonal K(x, x) is computed with correlation exactly 1 (theta
= 0), so unlike an arccos of a rounded 1 it is well conditioned; results
match neural-tangents to float64 rounding off the diagonal.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from synsym.core.architectures import ARCHITECTURES, FAMILY_MEMBERS, SIGMA_B2, SIGMA_W2, check_padding

CONV_MEMBERS = FAMILY_MEMBERS["conv"]


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


def _conv(k: torch.Tensor, s: int, add: torch.Tensor | float, padding: str) -> torch.Tensor:
    """sigma_w^2 * (3x3 mean over the image axes of (..., H, W), circular or zero-padded) + add.

    Separable: three shifted views summed along H, then along W (4 adds;
    avg_pool2d is several times slower on CPU in float64)."""
    shape = k.shape
    x = F.pad(k.reshape(-1, 1, s, s), (1, 1, 1, 1), mode="circular" if padding == "circular" else "constant")
    x = x[:, :, 0:s] + x[:, :, 1 : s + 1] + x[:, :, 2 : s + 2]
    x = x[..., 0:s] + x[..., 1 : s + 1] + x[..., 2 : s + 2]
    return x.reshape(shape).mul_(SIGMA_W2 / 9).add_(add)


def n_offsets(s: int, padding: str) -> int:
    """How many offsets delta the (a, delta) layout has: s^2 circular, (2s-1)^2 with zero padding."""
    return s * s if check_padding(padding) == "circular" else (2 * s - 1) ** 2


def zero_offset(s: int, padding: str) -> int:
    """Index of delta = 0 (the pixel variances' offset) in the layout."""
    return 0 if padding == "circular" else (s - 1) * (2 * s - 1) + (s - 1)


def offset_layout(s: int, device: torch.device | str, padding: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(idx, valid), each (d, D): idx[a, delta] = flat index of pixel b = a + delta and valid[a, delta]
    whether b is inside the image (always, circularly). Zero padding's delta = (dh, dw) in
    [-(s-1), s-1]^2 is indexed (dh + s - 1) (2s - 1) + dw + s - 1; invalid entries point at pixel 0."""
    h = torch.arange(s, device=device)
    ah, aw = (t.reshape(-1, 1) for t in torch.meshgrid(h, h, indexing="ij"))
    if check_padding(padding) == "circular":
        bh, bw = (ah + ah.reshape(1, -1)) % s, (aw + aw.reshape(1, -1)) % s
        return bh * s + bw, torch.ones(s * s, s * s, dtype=torch.bool, device=device)
    r = torch.arange(-(s - 1), s, device=device)
    dh, dw = (t.reshape(1, -1) for t in torch.meshgrid(r, r, indexing="ij"))
    bh, bw = ah + dh, aw + dw
    valid = (bh >= 0) & (bh < s) & (bw >= 0) & (bw < s)
    return torch.where(valid, bh * s + bw, 0), valid


def _window(i: torch.Tensor, s: int, p: int) -> torch.Tensor:
    """Which p x p pooling window flat pixel index i falls in."""
    return (i // s // p) * (s // p) + (i % s) // p


def readout_weights(s: int, dtype: torch.dtype, device: torch.device | str, padding: str) -> torch.Tensor:
    """W (d*D, 4): readout functionals on K[a, delta] for vec, gap, lap4, lap8 (D = n_offsets)."""
    d = s * s
    idx, valid = offset_layout(s, device, padding)
    big = idx.shape[1]
    a = torch.arange(d, device=device).reshape(-1, 1).expand(d, big)
    cols = []
    for arch in CONV_MEMBERS:
        spec = ARCHITECTURES[arch]
        if spec.readout == "flatten":
            w = torch.zeros(d, big, dtype=dtype, device=device)
            w[:, zero_offset(s, padding)] = 1.0 / d
        elif spec.readout == "gap":
            w = valid.to(dtype) / (d * d)
        else:
            same = (_window(a, s, spec.pool) == _window(idx, s, spec.pool)) & valid
            w = same.to(dtype) / ((s // spec.pool) ** 2 * spec.pool**4)
        cols.append(w.reshape(-1))
    return torch.stack(cols, dim=1)


def _pixel_scales(v: torch.Tensor, depth: int, padding: str) -> torch.Tensor:
    """(L, n, s, s): sqrt of the pixel variances after each layer's conv, from the
    input variances v (n, s, s); they normalize that layer's arc-cosine map."""
    s = v.shape[-1]
    out = []
    for _ in range(depth):
        v = _conv(v, s, SIGMA_B2, padding)
        out.append(torch.sqrt(v))
        v = v / 2
    return torch.stack(out)


def _at_offsets(r: torch.Tensor, padding: str) -> torch.Tensor:
    """(L, n, s, s) per-pixel values -> (L, n, delta, s, s): the value at b = a + delta,
    laid out like K[pair, delta, a] (1 where b is outside the image: those entries are masked)."""
    depth, n, s, _ = r.shape
    d = s * s
    idx, valid = offset_layout(s, r.device, padding)
    big = idx.shape[1]
    gather_b = idx.t().reshape(1, big, d)
    r2 = r.reshape(depth * n, 1, d).expand(-1, big, d)
    out = torch.gather(r2, 2, gather_b.expand(depth * n, big, d))
    if padding != "circular":
        out = torch.where(valid.t(), out, torch.ones((), dtype=out.dtype, device=out.device))
    return out.reshape(depth, n, big, s, s)


def conv_stack(f1, f2, idx, scales, sym: bool, w, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The conv-family layers in plain torch ops on K[pair, delta, a]: the reference of both fused kernels.

    ``valid`` (d, D), from offset_layout, means zero padding: entries with b outside the image
    are held at 0 and the box filter pads with zeros; None means circular padding."""
    n1, d, c = f1.shape
    n2, s, big = f2.shape[0], int(round(d**0.5)), idx.shape[1]
    padding = "circular" if valid is None else "zero"
    full = torch.einsum("iac,jbc->ijab", f1, f2) / c  # (n1, n2, d, d) over (a, b)
    k = torch.gather(full, 3, idx.expand(n1, n2, d, big)).transpose(2, 3).reshape(n1, n2, big, s, s)
    del full
    mask = None if valid is None else valid.t().reshape(big, s, s).to(k.dtype)
    if mask is not None:
        k.mul_(mask)
    # layout (n1, n2, delta, h, w): the box filter runs over a = (h, w) with delta as channels
    ntk = torch.zeros_like(k)
    exact = None
    if sym:
        exact = torch.zeros(n1, n2, big, 1, 1, dtype=torch.bool, device=f1.device)
        exact[torch.arange(n1), torch.arange(n1), zero_offset(s, padding)] = True
        exact = exact.expand(n1, n2, big, s, s)
    for sv1, r2b in scales:
        k = _conv(k, s, SIGMA_B2, padding)
        ntk = _conv(ntk, s, k, padding)
        k, ntk = _relu(k, sv1.reshape(n1, 1, 1, s, s) * r2b.reshape(1, n2, big, s, s), ntk, exact)
        if mask is not None:  # outside the image the conv's bias and the arc-cosine map made non-zeros
            k.mul_(mask)
            ntk.mul_(mask)
    # K[pair, delta, a] -> K[pair, a, delta] to match the weights' (a, delta) order
    pk = k.permute(0, 1, 3, 4, 2).reshape(n1 * n2, d * big).to(w.dtype) @ w  # in w's dtype (float64 readouts)
    pt = ntk.permute(0, 1, 3, 4, 2).reshape(n1 * n2, d * big).to(w.dtype) @ w
    return pk, pt


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
