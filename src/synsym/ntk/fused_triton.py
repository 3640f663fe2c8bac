"""Fused GPU kernel (Triton) for the conv-family NNGP/NTK recursion of synsym.ntk.engine.

Same idea as the fused CPU kernel (fused_cpu.cpp): in the K[pair, delta, a]
layout (b = a + delta, circular) every (image pair, delta) slice of s x s values
goes through all L conv + ReLU layers on its own, so one Triton program holds a
block of such slices in registers for the whole depth and writes back only its
readouts (vec, gap, lap4, lap8): a few numbers per program instead of the
(pairs x d x d) kernels the eager path streams through memory ~30 times a layer.

- The 3x3 circular box filter is two register gathers (``tl.gather``) along
  the pixel axis per direction: rows, then columns, in the eager path's
  (up + mid) + down order; the NNGP and NTK slices go through them joined
  as one tensor.
- The arc-cosine is written out (fdlibm's acos layout: asin's series on [0, 0.5]
  and the half-angle identity outside, with a fitted polynomial in place of
  fdlibm's rational, so no division), because Triton's interpreter has no
  libdevice acos; the same code runs compiled on a GPU and interpreted on CPU
  tensors (``TRITON_INTERPRET=1``), which is how CI tests it.
- No division, no branch (float64 square roots are straight-line code, see
  _sqrt), no float64 <-> float32 conversion (_sqrt_start moves bits instead),
  no masked load in the layer loop, sign and range tests on bits rather than
  float64 comparisons (_negative, _u), and the arc-cosine map's 1 / (2 pi)
  folded into constants: each is instructions per element-layer, or time on
  the float64 pipe, counted on the sm_90 code by bench/sass.py.
- Float scalars (the weight and bias variances) are ``tl.constexpr``: compiled Triton passes a
  float runtime argument as float32 (4e-8 off in float64 on a GPU), the interpreter does not.
- The exact diagonal: for K(x, x) at delta = 0 the correlation is set to
  exactly 1, as in the other two implementations.
- Each program writes its partial readouts to its own row; the host sums
  them in a fixed order, so results are deterministic (no atomics).

On a machine without CUDA this module turns the interpreter on before it
defines the kernel (only the interpreter can run it there).
"""

from __future__ import annotations

import math
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

PI, TWO_PI, INV_TWO_PI = tl.constexpr(math.pi), tl.constexpr(2 * math.pi), tl.constexpr(1 / (2 * math.pi))
HALF_PI = tl.constexpr(math.pi / 2)
# asin(x) = x + x z P(z), z = x^2 <= 1/4: P's coefficients, z^0 first. A degree-12 polynomial fitted at 60
# digits to (asin(sqrt z) - sqrt z) / z^1.5 on [0, 1/4] by Chebyshev interpolation,
# mpmath.chebyfit(P, [0, 0.25], 13) (tests/test_triton.py refits it); asin within ~1 ulp on [0, 0.5].
ASIN_P = tl.constexpr((
    0.16666666666666669, 0.07499999999998433, 0.04464285714635543, 0.030381944138531247, 0.02237217294214989,
    0.017352392720869973, 0.013971212973552933, 0.011479177415184906, 0.01032281435018578,
    0.005457506718640358, 0.01740087944269402, -0.014851887071247204, 0.028757851367421566))


@triton.jit
def _r(z):
    """R(z) = z P(z) by Horner (ASIN_P): asin(x) = x + x R(x^2) on |x| <= 0.5. fdlibm's rational p / q
    in its place costs a float64 division, ~17 SASS instructions with a slow-path call on sm_90."""
    p = ASIN_P[12] * z + ASIN_P[11]
    for n in tl.static_range(2, 13):
        p = p * z + ASIN_P[12 - n]
    return z * p


@triton.jit
def _neg(x):
    """-x as LLVM's fneg, which a float64 fused multiply-add takes as a sign on its operand, in every Triton.
    Triton 3.6.0 (the H200 image's, the one its measurement used) compiles unary minus to 0.0 - x, a
    float64 addition nothing may drop (0.0 - 0.0 is +0.0, not -0.0): 3 float64 operations per
    element-layer, by bench/sass.py under that Triton (3.9.0 emits fneg). x * -1.0 is exactly -x, and
    LLVM turns it into fneg under both. (-0.0 - x would be too, but 3.6.0 makes the literal +0.0.)"""
    return x * -1.0


@triton.jit
def _sqrt_from(v, s, h):
    """sqrt(v) within 1 ulp from rough s ~ sqrt(v) and h ~ 1 / (2 sqrt(v)) (relative errors up to 2^-21
    will do, 2^-20 not quite; float32's rsqrt is within ~2^-22.6): two Newton steps s += (v - s^2) h,
    each two fused multiply-adds (explicit, so the interpreter rounds as a GPU does). With start error
    e the error goes e -> 1.5 e^2 -> ~1.5 e^3, below float64's rounding: about 1 root in 3,000 at
    e = 2^-22 (1 in 10^6 from numpy's float32 rsqrt) is 1 ulp off the correctly rounded one. A third
    step would round correctly but for ~1 in 2^40, for 2 more float64 operations per root on the
    kernel's busiest pipe."""
    for _ in tl.static_range(2):
        s = tl.fma(tl.fma(_neg(s), s, v), h, s)
    return s


@triton.jit
def _sqrt_start(v):
    """(s, h) for _sqrt_from from float32's approximate rsqrt y of a float64 v in [2^-126, 2^128) or 0:
    s = v y, h = y / 2, in float64. v and y change width by integer operations on their bits, not by
    conversions (F2F: a quarter of the float64 rate on sm_90, 3 per root): v's bits >> 29 are float32's
    exponent (re-biased by - 896 << 23, mod 2^32) and v's mantissa truncated to 23 bits; y's bits << 29
    are float64's, re-biased by + 896 << 52 (895 for y / 2). v = 0 reads as 2.0 there: y is finite, s = 0."""
    vb = ((v.to(tl.int64, bitcast=True) >> 29).to(tl.int32) + 0x40000000).to(tl.float32, bitcast=True)
    yb = tl.math.rsqrt(vb).to(tl.int32, bitcast=True).to(tl.int64) << 29
    return v * (yb + (896 << 52)).to(tl.float64, bitcast=True), (yb + (895 << 52)).to(tl.float64, bitcast=True)


@triton.jit
def _sqrt(v):
    """sqrt(v) in float64 for v = 0 or 2^-126 <= v < 2^128 (every argument whose root the kernel uses;
    others give a wrong value), without a branch.

    ``tl.sqrt`` (sqrt.rn.f64) starts from a float64 MUFU rsqrt and refines in ~9 dependent float64
    operations behind a range check that branches to a slow path: each of a thread's square roots
    is then its own basic block, which the scheduler cannot interleave with its other elements'.
    Here: float32's start, then 5 float64 operations of straight-line code."""
    if v.dtype == tl.float64:
        s, h = _sqrt_start(v)
        r = _sqrt_from(v, s, h)
    else:  # float32's sqrt.rn is a short sequence of short-latency operations: kept
        r = tl.sqrt(v)
    return r


@triton.jit
def _negative(x):
    """x's sign bit: x < 0, or x = -0.0. In float64 an integer test of its bits; x < 0 would be a
    float64 comparison (DSETP), on the float64 pipe."""
    if x.dtype == tl.float64:
        neg = x.to(tl.int64, bitcast=True) < 0
    else:
        neg = x < 0
    return neg


@triton.jit
def _full(v, like):
    """v in like's shape and dtype. A select between two float literals is float32 in Triton, and
    float64 arithmetic on it converts (F2F, a quarter of the float64 rate on sm_90)."""
    return tl.full(like.shape, v, like.dtype)


@triton.jit
def _u(ax, neg):
    """u = (pi - arccos c) sign(c) for c = -ax if neg else ax, ax in [0, 1], from one sqrt and a polynomial
    (no division): |u| = pi - arccos c, and ax u = (pi - arccos c) c, what the ReLU map needs.

    fdlibm's arccos in two branches: below 1/2, arccos ax = pi/2 - t, t = asin ax = ax + ax R(ax^2), so
    u = t + pi/2 (c >= 0) or t - pi/2; from 1/2, arccos ax = 2 v, v = asin sqrt(z) = x + x R(z), x = sqrt(z),
    z = (1 - ax) / 2, so u = pi - 2 v or -2 v. A GPU runs both sides of a ``tl.where``, so the branches
    share every float64 operation: z, x and the constants are selected per element, then one R(z), one
    x + x R, one m (x + x R) + shift (m = 1 or -2: exact scalings): 4 float64 operations besides R and the root,
    where arccos first and u from it took 9 (no pi - (pi - ...) cancellation near c = -1 either way)."""
    if ax.dtype == tl.float64:  # ax >= 0.5 as an integer test of its bits (ax >= 0: they order as it does)
        big = ax.to(tl.int64, bitcast=True) >= 0x3FE0000000000000
    else:
        big = ax >= 0.5
    # z = ax * ax + 0 or (1 - ax) / 2 = -0.5 ax + 0.5: one fused multiply-add (exact for ax in [0.5, 1] as
    # (1 - ax) * 0.5 is), of selected operands
    z = tl.where(big, _full(-0.5, ax), ax) * ax + tl.where(big, _full(0.5, ax), _full(0.0, ax))
    r = _r(z)
    xs = tl.where(big, _sqrt(z), ax)
    shift = tl.where(big, tl.where(neg, _full(0.0, ax), _full(PI, ax)),
                     tl.where(neg, _full(-HALF_PI, ax), _full(HALF_PI, ax)))
    return tl.where(big, _full(-2.0, ax), _full(1.0, ax)) * (xs + xs * r) + shift


@triton.jit
def _boxes(k, ntk, up, dn, lf, rt, scale, add):
    """The layer's two box filters at once: kb = scale * box(k) + add and scale * box(ntk) + kb, where box
    is the circular 3x3 sum along the pixel axis ((up + mid) + down, then (left + mid) + right, the
    eager path's order). k and ntk go through the gathers side by side as one (BD, AP, 2) tensor
    (up/dn/lf/rt are gather indices of that shape): half the gathers, index arithmetic and register-layout
    conversions of two separate filters, and no copy of the slice into every warp at 32x32 (bench/sass.py)."""
    x = tl.join(k, ntk)
    t = (tl.gather(x, up, axis=1) + x) + tl.gather(x, dn, axis=1)
    bk, bn = tl.split((tl.gather(t, lf, axis=1) + t) + tl.gather(t, rt, axis=1))
    kb = scale * bk + add
    return kb, scale * bn + kb


@triton.jit
def _boxes_zero(k, ntk, up, dn, lf, rt, mu, md, ml, mr, scale, add):
    """_boxes with zero padding: a neighbour across the image's edge reads 0 (mu, md, ml, mr: 1.0 where the
    up / down / left / right neighbour is inside, else 0.0), in the same order of additions as the eager path's
    zero-padded box (adding the exact zeros changes nothing)."""
    x = tl.join(k, ntk)
    t = (tl.gather(x, up, axis=1) * mu + x) + tl.gather(x, dn, axis=1) * md
    bk, bn = tl.split((tl.gather(t, lf, axis=1) * ml + t) + tl.gather(t, rt, axis=1) * mr)
    kb = scale * bk + add
    return kb, scale * bn + kb


@triton.jit
def _conv_stack_kernel(
    f1_ptr, f2_ptr, sc1_ptr, sc2_ptr, w_ptr, pk_ptr, pt_ptr, ok_ptr,
    n2,
    SCALE: tl.constexpr, SB2: tl.constexpr,
    S: tl.constexpr, C: tl.constexpr, L: tl.constexpr, R: tl.constexpr,
    AP: tl.constexpr, BD: tl.constexpr, SYM: tl.constexpr, E: tl.constexpr,
    ZERO: tl.constexpr = False,
):
    """One program: image pair (i, j), offsets delta in [db * BD, db * BD + BD), all L layers.

    SCALE (sigma_w^2 / 9) and SB2 (sigma_b^2) are constexpr: compiled Triton passes a float
    runtime argument as float32, a constexpr becomes a float64 literal in a float64 kernel.
    E: the pixels a thread holds in one register layout for the whole layer loop (> 1), or 1
    (layout_elems says when and why).
    ZERO: zero padding (neural-tangents' SAME): offsets delta = (dh, dw) in [-(S-1), S-1]^2, indexed
    (dh + S - 1) (2S - 1) + dw + S - 1 as in synsym.ntk.eager.offset_layout; (pixel, offset) entries with
    a + delta outside the image are held at 0 and the box filter reads 0 across the edge."""
    A: tl.constexpr = S * S
    S2: tl.constexpr = 2 * S - 1
    D: tl.constexpr = S2 * S2 if ZERO else S * S  # offsets
    Z0: tl.constexpr = (S - 1) * S2 + S - 1 if ZERO else 0  # delta = 0
    pid, db = tl.program_id(0), tl.program_id(1)
    nb = tl.num_programs(1)
    i, j = pid // n2, pid % n2
    a = tl.arange(0, AP)[None, :]                       # pixel (padded to a power of two)
    delta = db * BD + tl.arange(0, BD)[:, None]         # offset
    # the same (offset, pixel) block flat, t = (delta - db * BD) * AP + a: the layer loop's loads are flat
    t = tl.arange(0, BD * AP)
    a1, d1 = t % AP, db * BD + t // AP
    if E > 1:
        # loaded, not computed: Triton's coalescing gives every load of a program as many consecutive elements
        # per thread as the widest load among them allows (16 one-byte ones, 2 float64 ones), up to the
        # elements per thread; with BD = num_warps that is AP / 32, the layout tl.gather wants along the pixel
        # axis, so the layer loop runs in one register layout (layout_elems: no shared memory, no barrier)
        ok1 = tl.load(ok_ptr + db * (BD * AP) + t) != 0
    elif ZERO:
        bh1, bw1 = a1 // S + d1 // S2 - (S - 1), a1 % S + d1 % S2 - (S - 1)
        ok1 = (a1 < A) & (d1 < D) & (bh1 >= 0) & (bh1 < S) & (bw1 >= 0) & (bw1 < S)
    else:
        ok1 = (a1 < A) & (d1 < A)
    if ZERO:
        b1 = tl.where(ok1, a1 + (d1 // S2 - (S - 1)) * S + d1 % S2 - (S - 1), 0)  # pixel a + delta of image j
    else:
        b1 = tl.where(ok1, ((a1 // S + d1 // S) % S) * S + (a1 % S + d1 % S) % S, 0)
    ok, b = tl.reshape(ok1, (BD, AP)), tl.reshape(b1, (BD, AP))
    ah, aw = a // S, a % S
    # gather indices of the four neighbours along the pixel axis (padded pixels point at themselves);
    # they depend on the pixel only, so with A a power of two they are the same for every offset
    # and for both halves of the joined (k, ntk) tensor _boxes filters
    px = a < A
    zero = tl.zeros((BD, AP, 2), dtype=tl.int32)
    up = tl.where(px, ((ah + S - 1) % S) * S + aw, a)[:, :, None] + zero
    dn = tl.where(px, ((ah + 1) % S) * S + aw, a)[:, :, None] + zero
    lf = tl.where(px, ah * S + (aw + S - 1) % S, a)[:, :, None] + zero
    rt = tl.where(px, ah * S + (aw + 1) % S, a)[:, :, None] + zero

    # the arrays read outside the layer loop are pixel-minor ((n, C, A) pixels, (R, D, A) readout weights): a
    # warp's lanes hold consecutive pixels, so each warp-load reads 2 or 3 cache lines, not one per lane
    k = tl.load(f1_ptr + i * C * A + a, mask=a < A, other=0.0) * tl.load(f2_ptr + j * C * A + b, mask=ok, other=0.0)
    for c in tl.static_range(1, C):
        k += tl.load(f1_ptr + (i * C + c) * A + a, mask=a < A, other=0.0) * tl.load(
            f2_ptr + (j * C + c) * A + b, mask=ok, other=0.0)
    # k and ntk are carried times 2 pi (the arc-cosine map's 1 / (2 pi) moves into the box's constexpr
    # scale and the readouts): two float64 multiplications fewer per element-layer
    k = k * TWO_PI
    ntk = tl.zeros_like(k)
    if ZERO:  # which of the four neighbours lie inside the image (zero padding reads 0 across the edge)
        mu = (tl.where(ah > 0, 1.0, 0.0)[:, :, None] + zero).to(k.dtype)
        md = (tl.where(ah < S - 1, 1.0, 0.0)[:, :, None] + zero).to(k.dtype)
        ml = (tl.where(aw > 0, 1.0, 0.0)[:, :, None] + zero).to(k.dtype)
        mr = (tl.where(aw < S - 1, 1.0, 0.0)[:, :, None] + zero).to(k.dtype)
    # each image's pixel scales and reciprocals, (L, 2, AP) rows (padded pixels 1.0): one address per element
    # for the whole depth, each layer's two values at constant offsets (no address arithmetic in the loop).
    # Unmasked loads (a masked load first fills its registers with the default, two moves per float64
    # value): padded offsets read b = 0, finite and dropped before the readout. The pixel axis is stored
    # in the order a warp reads it (scale_rows): thread l of a warp holds pixels l E .. l E + E - 1 and its
    # r-th load reads pixel l E + r, so pixel p sits at (p % E) * (AP / E) + p // E and each warp-load reads
    # 32 consecutive values (2 cache lines, not one per lane; a shift by delta only permutes the lanes)
    W: tl.constexpr = AP // E
    p1 = sc1_ptr + i * (2 * L * AP) + (a1 % E) * W + a1 // E
    p2 = sc2_ptr + j * (2 * L * AP) + (b1 % E) * W + b1 // E
    exact = (delta == Z0) & (i == j) & SYM
    for layer in tl.static_range(L):
        if ZERO:
            kb, ntk = _boxes_zero(k, ntk, up, dn, lf, rt, mu, md, ml, mr, SCALE * INV_TWO_PI, SB2)
        else:
            kb, ntk = _boxes(k, ntk, up, dn, lf, rt, SCALE * INV_TWO_PI, SB2)
        q = tl.reshape(tl.load(p1 + 2 * layer * AP) * tl.load(p2 + 2 * layer * AP), (BD, AP))
        rq = tl.reshape(tl.load(p1 + (2 * layer + 1) * AP) * tl.load(p2 + (2 * layer + 1) * AP), (BD, AP))
        x = kb * rq  # the correlation c; reciprocals from the host: no division here
        # |c| clamped to 1, in one compare-and-select with the exact diagonal's (tl.minimum adds ~4 instructions
        # of NaN handling; a NaN c still gives NaN here)
        ax = tl.where(exact | (tl.abs(x) > 1.0), 1.0, tl.abs(x))
        u = _u(ax, _negative(x))  # (pi - acos c) sign(c)
        sn = _sqrt(1.0 - ax * ax)  # >= 0 as computed: ax <= 1, so ax * ax <= 1 after rounding too
        k = (sn + ax * u) * q
        ntk = ntk * tl.abs(u)
        if ZERO:  # outside the image the conv's bias and the arc-cosine map made non-zeros: back to 0
            k = tl.where(ok, k, 0.0)
            ntk = tl.where(ok, ntk, 0.0)
    k = tl.where(ok, k, 0.0)
    ntk = tl.where(ok, ntk, 0.0)
    for r in tl.static_range(R):  # readouts in w's dtype: float64 sums of a float32 recursion
        wr = tl.load(w_ptr + (r * D + delta) * A + a, mask=ok, other=0.0)
        tl.store(pk_ptr + (pid * nb + db) * R + r, tl.sum(tl.sum(wr * k.to(wr.dtype), axis=1), axis=0) * INV_TWO_PI)
        tl.store(pt_ptr + (pid * nb + db) * R + r, tl.sum(tl.sum(wr * ntk.to(wr.dtype), axis=1), axis=0) * INV_TWO_PI)


# (slice elements per program, warps per program) by image size on a GPU. Chosen from static counts of
# the sm_90 code (bench/sass.py, as a launch compiles it, under Triton 3.9.0 and the H200 image's 3.6.0; no
# GPU was at hand), by a scheduler's cycles per warp and element-layer (bench/sass.py's slots(): the largest
# of issue, float64 pipe and the SM's memory-I/O path), then resident warps. At 16x16, (2,048, 8) has as many
# offsets as warps, so the layer loop runs in one register layout (layout_elems): 91-92 hot, 45 float64, 21
# memory-I/O SM cycles (13 shuffles, no shared memory), so 92 cycles, issue-bound, at 8 warps per SM
# (160-180 registers); (1,024, 4) and (512, 2) count about the same; (1,024, 8), two layouts, ~1.4x as many.
# At 8x8, (512, 4): 94 hot, 22 memory-I/O, 94 cycles at 16-24 warps per SM. At 32x32 (one layout would need
# 32 pixels a thread), (4,096, 8): 92-94 hot, 33 memory-I/O (12 shuffles, 4 shared accesses), 132-133
# cycles, 8 warps per SM; (2,048, 4) ~2% more. Which hides latency best only timing can tell: bench/gpu.py
# times the first few block_candidates side by side and prints the fastest.
# An entry may name a third number, registers per thread (Triton's maxnreg: ptxas spills beyond it).
GPU_BLOCKS: dict[int, tuple[int, ...]] = {8: (512, 4), 16: (2048, 8), 32: (4096, 8)}
DEFAULT_BLOCK = (1024, 4)
# Compile options every launch passes. Fused multiply-adds pinned on: Triton 3.9.0 fuses by default but
# warns that 3.10 will not, and unfused the float64 kernel does 64 float64 operations per element-layer
# instead of 45 at 16x16, with 254 registers instead of 176 (bench/sass.py, fusion off).
# The roots' Newton steps are explicit tl.fma either way; the interpreter fuses nothing.
LAUNCH = {"enable_fp_fusion": True}


def block_candidates(s: int) -> tuple[tuple[int, ...], ...]:
    """What bench/gpu.py times at image size s, in this order (it takes the first few: each shape compiles
    for ~1 min at 32x32), GPU_BLOCKS' shape first. 32 elements per thread ((2048, 2), (1024, 1), (4096, 4))
    spill thousands of times at 32x32 by static count and compile for minutes, so they are not candidates.
    (2048, 8, 128) at 16x16: GPU_BLOCKS' shape with registers capped at 128 a thread (Triton's maxnreg), so an
    SM holds 16 warps instead of 8, for 0.6 spill accesses and 2 more instructions per element-layer by
    count; which hides latency better only timing can tell. At 32x32 the same cap spills 7 times an
    element-layer, at 8x8 80 registers already allow 24 warps. (1,024, 8) at 8x8: 91 hot instructions per
    element-layer under Triton 3.9.0, 95 under 3.6.0, against (512, 4)'s 94.5 under both, same warps."""
    return {8: ((512, 4), (1024, 8), (1024, 4), (512, 8)), 16: ((2048, 8), (2048, 8, 128), (1024, 4), (512, 2)),
            32: ((4096, 8), (2048, 4), (1024, 4))}.get(s, ((1024, 4), (512, 4)))


def block_parts(entry: tuple[int, ...]) -> tuple[int, int, int | None]:
    """(slice elements, warps, register cap or None) of a GPU_BLOCKS / block_candidates entry."""
    be, nw, *cap = entry
    return be, nw, cap[0] if cap else None


def block_shape(a: int, block_elems: int) -> tuple[int, int]:
    """(AP, BD) of a program: pixels padded to a power of two, and the offsets that make ~block_elems elements."""
    ap = triton.next_power_of_2(a)
    return ap, min(ap, max(1, block_elems // ap))


def layout_elems(ap: int, bd: int, num_warps: int) -> int:
    """Pixels per thread when the whole layer loop can run in one register layout, else 1.

    tl.gather along the pixel axis wants that axis inside one warp: AP / 32 consecutive pixels a thread,
    warps on offsets. Triton's coalescing gives a program's loads min(widest load's vector, elements per
    thread) consecutive elements a thread; the kernel's one-byte load of its (offset, pixel) mask widens that to
    16, so with as many offsets as warps (bd == num_warps: AP / 32 elements a thread) and 64 <= AP <= 512 the
    loads get the gathers' layout and no value moves through shared memory in the loop (bench/sass.py, under
    Triton 3.6.0 and 3.9.0). At 32x32 (AP / 32 = 32) it cannot, and the kernel computes its mask instead."""
    return ap // 32 if 64 <= ap <= 512 and bd == num_warps else 1


def scale_rows(sv: torch.Tensor, ap: int, e: int) -> torch.Tensor:
    """(n, L, 2, ap): each image's pixel scales sv (L, n, A) and their reciprocals, pixels padded to ap with
    1.0 and stored in the order the kernel's warps read them (pixel p at (p % e) * (ap / e) + p // e)."""
    x = torch.stack((sv, 1.0 / sv), 1).permute(2, 0, 1, 3)
    x = torch.nn.functional.pad(x, (0, ap - x.shape[-1]), value=1.0)
    p = torch.arange(ap, device=sv.device)
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)  # contiguous (empty_like keeps x's strides)
    out[..., (p % e) * (ap // e) + p // e] = x
    return out


def interpreted() -> bool:
    """True when the kernel runs in Triton's interpreter (no GPU, or TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def conv_stack(
    f1: torch.Tensor, f2: torch.Tensor, sv1: torch.Tensor, sv2: torch.Tensor, w: torch.Tensor,
    sym: bool, sw2: float, sb2: float, block_elems: int | None = None, num_warps: int | None = None,
    max_regs: int | None = None, *, padding: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Readouts after L conv + ReLU layers, (n1 * n2, R) each for NNGP and NTK sums.

    f1 (n1, A, C) are x1's pixels divided by C, f2 (n2, A, C) x2's pixels;
    sv1 (L, n1, A) and sv2 (L, n2, A) the square roots of the pixel variances
    after each layer's conv; w (D, A, R) the readout weights on (delta, a), whose dtype the
    readout sums take (float64 for a float32 recursion: the float32 mode). ``padding``: circular (D = A)
    or zero (D = (2s-1)^2, synsym.ntk.eager.offset_layout's order).
    ``block_elems``, ``num_warps``: slice elements (offsets x pixels) and warps per program; by default
    GPU_BLOCKS' entry for this image size (else DEFAULT_BLOCK) on a GPU, whole images in the interpreter;
    ``max_regs``: registers per thread at most (default: the entry's third number, when neither of the
    other two is given, else the compiler's choice).
    """
    n1, A, C = f1.shape
    n2, L, R = f2.shape[0], sv1.shape[0], w.shape[-1]
    s = math.isqrt(A)
    zero = padding == "zero"
    D = (2 * s - 1) ** 2 if zero else A
    if s * s != A or sv1.shape != (L, n1, A) or sv2.shape != (L, n2, A) or w.shape != (D, A, R):
        raise ValueError(f"conv_stack: shape mismatch f1 {tuple(f1.shape)} f2 {tuple(f2.shape)} "
                         f"sv1 {tuple(sv1.shape)} sv2 {tuple(sv2.shape)} w {tuple(w.shape)}")
    if (f1.device.type == "cpu") != interpreted():
        raise RuntimeError(f"Triton kernel: tensors on {f1.device} need "
                           f"{'TRITON_INTERPRET=1' if f1.device.type == 'cpu' else 'a compiled (non-interpreted) Triton'}")
    tuned = (1 << 14, 4) if interpreted() else GPU_BLOCKS.get(s, DEFAULT_BLOCK)
    be, nw, cap = block_parts(tuned)
    if block_elems is None and num_warps is None:
        max_regs = max_regs or cap
    block_elems, num_warps = block_elems or be, num_warps or nw
    ap, bd = block_shape(A, block_elems)
    nb = triton.cdiv(D, bd)
    dt = f1.dtype
    f1, f2 = (t.to(dt).transpose(1, 2).contiguous() for t in (f1, f2))  # (n, C, A): pixel-minor
    sv1, sv2 = (t.to(dt) for t in (sv1, sv2))
    w = w.permute(2, 0, 1).contiguous()  # (R, D, A), in its own dtype: float64 readout sums of a float32 recursion
    pk = torch.empty(n1 * n2, nb, R, dtype=w.dtype, device=f1.device)
    pt = torch.empty_like(pk)
    e = layout_elems(ap, bd, num_warps)
    # scales and reciprocals for every layer (the divisions once on the host, not per (pair, delta) on the GPU)
    sc1, sc2 = (scale_rows(sv, ap, e) for sv in (sv1, sv2))
    d = torch.arange(nb * bd, device=f1.device)[:, None]
    px = torch.arange(ap, device=f1.device)[None, :]
    ok = (d < D) & (px < A)  # (offset, pixel) in range
    if zero:  # and a + delta inside the image
        bh, bw = px // s + d // (2 * s - 1) - (s - 1), px % s + d % (2 * s - 1) - (s - 1)
        ok &= (bh >= 0) & (bh < s) & (bw >= 0) & (bw < s)
    ok = ok.to(torch.int8)
    _conv_stack_kernel[(n1 * n2, nb)](
        f1, f2, sc1, sc2, w, pk, pt, ok, n2, SCALE=sw2 / 9.0, SB2=float(sb2),
        S=s, C=C, L=L, R=R, AP=ap, BD=bd, SYM=bool(sym), E=e, ZERO=zero, num_warps=num_warps,
        **LAUNCH, **({"maxnreg": max_regs} if max_regs else {}),
    )
    return pk.sum(1), pt.sum(1)


@triton.jit
def _acos_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    o = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + o, mask=o < n, other=0.0)
    u = _u(tl.abs(x), x < 0)
    tl.store(y_ptr + o, _full(PI, u) - tl.abs(u), mask=o < n)  # |u| = pi - acos c


def acos(x: torch.Tensor) -> torch.Tensor:
    """The kernel's own arc-cosine, pi - |u| (_u), elementwise, to test against torch.arccos."""
    x = x.contiguous()
    y = torch.empty_like(x)
    _acos_kernel[(triton.cdiv(x.numel(), 1024),)](x, y, x.numel(), BLOCK=1024, **LAUNCH)
    return y


@triton.jit
def _sqrt_kernel(x_ptr, y_ptr, n, START_ERROR: tl.constexpr, BLOCK: tl.constexpr):
    o = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + o, mask=o < n, other=0.0)
    s, h = _sqrt_start(x)  # what _sqrt does, with the start made worse by START_ERROR (0: exactly _sqrt)
    tl.store(y_ptr + o, _sqrt_from(x, s * (1.0 + START_ERROR), h * (1.0 + START_ERROR)), mask=o < n)


def sqrt(x: torch.Tensor, start_error: float = 0.0) -> torch.Tensor:
    """The kernel's own square root (_sqrt), elementwise, to test against IEEE sqrt; with start_error,
    _sqrt_from started from float32's root and rsqrt times (1 + start_error): a worse start than the GPU's."""
    x = x.contiguous()
    y = torch.empty_like(x)
    _sqrt_kernel[(triton.cdiv(x.numel(), 1024),)](x, y, x.numel(), START_ERROR=float(start_error), BLOCK=1024, **LAUNCH)
    return y
