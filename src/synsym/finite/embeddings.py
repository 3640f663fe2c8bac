"""Theorem 3.1 made constructive: GAP_n ⊆ VEC_n ⊆ LCN_n ⊆ VEC_dn, LCN_n ⊆ FCN_dn.

Each function maps the (stacked) parameters of the smaller network to
parameters of the larger one that compute exactly the same function, in
the NTK parameterization of :mod:`synsym.finite.models` (so fan-in factors appear
where widths differ). Tests check equal outputs on random inputs.
"""

from __future__ import annotations

import math

import torch

from synsym.finite.models import FILTER, K2, neighbours

# The constructions are the paper's (App. C), written for its circular padding: the index bookkeeping below
# assumes every filter tap reads a pixel of the image.
PADDING = "circular"


def _local_taps(w: torch.Tensor, s_img: int):
    """Each (location a, filter tap k, source pixel a + beta, weights (S, c, n)) of a local layer."""
    s, d, ck, n = w.shape
    c = ck // K2
    taps = w.reshape(s, d, c, K2, n)
    nbr = neighbours(s_img, w.device, PADDING).tolist()
    for a in range(d):
        for k in range(K2):
            yield a, k, nbr[a][k], taps[:, a, :, k, :]


def gap_in_vec(p: dict[str, torch.Tensor], image_size: int) -> dict[str, torch.Tensor]:
    """Readout weights constant over pixels: w_vec[c, pos] = w_gap[c] / sqrt(d)."""
    d = image_size**2
    out = dict(p)
    out["w_out"] = torch.repeat_interleave(p["w_out"], d, dim=1) / math.sqrt(d)
    return out


def vec_in_lcn(p: dict[str, torch.Tensor], image_size: int, depth: int) -> dict[str, torch.Tensor]:
    """Copy each shared filter (and bias) to every location."""
    d = image_size**2
    out = dict(p)
    for layer in range(1, depth + 1):
        w = p[f"w{layer}"]  # (S, n, c, 3, 3)
        s, n, c = w.shape[:3]
        local = w.reshape(s, n, c * K2).transpose(1, 2)  # (S, c*9, n)
        out[f"w{layer}"] = local[:, None].expand(s, d, c * K2, n).clone()
        out[f"b{layer}"] = p[f"b{layer}"][:, None].expand(s, d, n).clone()
    return out


def lcn_in_vec(p: dict[str, torch.Tensor], image_size: int, depth: int) -> dict[str, torch.Tensor]:
    """The paper's App. C construction: channel block alpha of VEC_dn carries LCN location alpha.

    Output channel alpha*n + j at location alpha reads, through offset beta,
    only channel block alpha+beta at location alpha+beta, which by induction
    holds LCN's activations there; other blocks hold values the readout zeroes.
    """
    s_img = image_size
    d = s_img * s_img
    out = {}
    for layer in range(1, depth + 1):
        w = p[f"w{layer}"]  # (S, d, c*9, n)
        s, _, ck, n = w.shape
        c = ck // K2
        c_in = c if layer == 1 else d * n
        scale = 1.0 if layer == 1 else math.sqrt(d)  # fan-in 9c vs 9dn
        big = torch.zeros(s, d * n, c_in, FILTER, FILTER, dtype=w.dtype)
        for a, k, src, block in _local_taps(w, s_img):
            rows = slice(a * n, (a + 1) * n)
            cols = slice(0, c) if layer == 1 else slice(src * n, (src + 1) * n)
            big[:, rows, cols, k // FILTER, k % FILTER] += scale * block.transpose(1, 2)
        out[f"w{layer}"] = big
        out[f"b{layer}"] = p[f"b{layer}"].reshape(s, d * n)
    w_out = p["w_out"]  # (S, n*d, K), index j*d + alpha
    s, _, k_out = w_out.shape
    n = w_out.shape[1] // d
    big = torch.zeros(s, d * n * d, k_out, dtype=w_out.dtype)
    for a in range(d):
        for j in range(n):
            big[:, (a * n + j) * d + a] = math.sqrt(d) * w_out[:, j * d + a]
    out["w_out"], out["b_out"] = big, p["b_out"]
    return out


def lcn_in_fcn(p: dict[str, torch.Tensor], image_size: int, depth: int) -> dict[str, torch.Tensor]:
    """A locally connected layer is a sparse dense layer of width dn (unit alpha*n + j)."""
    s_img = image_size
    d = s_img * s_img
    out = {}
    for layer in range(1, depth + 1):
        w = p[f"w{layer}"]  # (S, d, c*9, n)
        s, _, ck, n = w.shape
        c = ck // K2
        fan_in = 3 * d if layer == 1 else d * n
        scale = math.sqrt(fan_in / ck)
        big = torch.zeros(s, fan_in, d * n, dtype=w.dtype)
        for a, _, src, block in _local_taps(w, s_img):
            # input index: pixel-major HWC for the image, unit-major alpha*n+i after
            big[:, src * c : (src + 1) * c, a * n : (a + 1) * n] += scale * block
        out[f"w{layer}"] = big
        out[f"b{layer}"] = p[f"b{layer}"].reshape(s, d * n)
    w_out = p["w_out"]
    s, _, k_out = w_out.shape
    n = w_out.shape[1] // d
    idx = torch.tensor([j * d + a for a in range(d) for j in range(n)])
    out["w_out"], out["b_out"] = w_out[:, idx], p["b_out"]
    return out
