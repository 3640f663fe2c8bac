"""The fused Triton kernel equals the eager engine (CI: Triton's interpreter on CPU tensors).

Triton's LLVM and TensorFlow's (loaded by neural-tangents in other tests of this
session) abort a process that holds both, so every Triton computation here runs in
one child process that never imports neural-tangents; the tests assert on what it reports.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# every test here runs Triton's interpreter, its compiler or a fresh process: the full tier only
pytestmark = pytest.mark.slow
SASS = Path(__file__).resolve().parents[1] / "bench" / "sass.py"  # counts the kernel compiled for sm_90

# The smallest cases that still take every code path (Triton's interpreter runs ~1e5x slower than a GPU):
# (image size, depth, dtype): the paper's depth, an odd size that pads pixels to a power of two, a size too
# small for the LAP readouts, float32
CASES = [(8, 8, "float64"), (5, 3, "float64"), (2, 2, "float64"), (8, 4, "float32")]
# the same in the layout a GPU runs at 16x16 (GPU_BLOCKS[16]): the whole layer loop in one register layout,
# layout_elems > 1, the (offset, pixel) mask read from the host. Interpreted at 8x8 with a program of LAYOUT_SHAPE
# (slice elements, warps), which takes that path (layout_elems 2) in 2 programs a pair (zero padding: 8)
GPU_SHAPE_CASES = [(8, 2, "float64"), (8, 2, "float32")]
LAYOUT_SHAPE = (2048, 32)
# zero padding (model.padding: zero): the same kernel with ZERO, whole images and in the GPU's layout
ZERO_CASES = [(8, 3, "float64"), (5, 2, "float64"), (8, 2, "float32")]
ZERO_GPU_SHAPE_CASES = [(8, 2, "float64")]
# the same with registers capped per thread (a GPU_BLOCKS entry's third number, Triton's maxnreg)
CAPPED_CASE, CAP = (8, 2, "float64"), 64

CHILD = r"""
import functools, inspect, json, sys
import numpy as np, torch
from synsym.core import architectures as A
from synsym.ntk import engine as E
from synsym.ntk import fused_triton

dev = "cuda" if torch.cuda.is_available() else "cpu"
out = {"device": dev, "interpreted": fused_triton.interpreted(), "cases": {}, "launches": 0, "float_args": [],
       "caps": []}


def spy(name, kernel):
    # Record every launch of `kernel` and any Python float it receives as a runtime (not
    # constexpr) argument: compiled Triton types such an argument float32, whatever the kernel
    # computes in; the interpreter keeps it float64, so only this check sees it without a GPU.
    sig = inspect.signature(kernel.fn)

    class Launcher:
        def __getitem__(self, grid):
            def launch(*args, **kw):
                out["launches"] += 1
                if name == "_conv_stack_kernel":  # the register cap each launch asks the compiler for
                    out["caps"].append(kw.get("maxnreg"))
                params = {k: v for k, v in kw.items() if k in sig.parameters}  # not launch options (num_warps)
                for p, v in sig.bind(*args, **params).arguments.items():
                    if isinstance(v, float) and "constexpr" not in str(sig.parameters[p].annotation):
                        out["float_args"].append(f"{name}({p}={v!r})")
                    if name == "_conv_stack_kernel" and isinstance(v, torch.Tensor):  # for the address trace below
                        arrays[p] = (v.data_ptr(), v.data_ptr() + v.numel() * v.element_size())
                return kernel[grid](*args, **kw)
            return launch
    return Launcher()


arrays = {}
for name in [n for n in dir(fused_triton) if n.endswith("_kernel")]:
    setattr(fused_triton, name, spy(name, getattr(fused_triton, name)))


def compare(s, depth, dt, into, padding="circular"):
    dtype = getattr(torch, dt)
    x, x2 = (torch.as_tensor(np.random.default_rng(i).standard_normal((n, s, s, 3)), dtype=dtype, device=dev)
             for i, n in ((0, 3), (1, 2)))
    for a, b, blk in ((x, None, "triangle"), (x2, x, "cross")):
        got = E.conv_block(a, b, depth, impl="triton", padding=padding)
        want = E.conv_block(a, b, depth, impl="eager", padding=padding)
        for arch in E.CONV_MEMBERS:
            if (A.get(arch).pool or 0) > s:  # LAP8 needs 8x8 images at least
                continue
            for i, kind in enumerate(("nngp", "ntk")):
                rel = ((got[arch][i] - want[arch][i]).abs() / want[arch][i].abs()).max().item()
                into[f"{s}-{depth}-{dt}-{blk}-{arch}-{kind}"] = rel


def at_gpu_shape(s):
    # conv_stack in the GPU's one-register-layout path: programs of LAYOUT_SHAPE (the interpreter's default is
    # whole images, layout_elems 1)
    be, nw = json.loads(sys.argv[7])
    return functools.partial(stack, block_elems=be, num_warps=nw), \
        fused_triton.layout_elems(*fused_triton.block_shape(s * s, be), nw)


# the layout each of GPU_BLOCKS' shapes runs in on a GPU
out["gpu_blocks_elems"] = {s: fused_triton.layout_elems(*fused_triton.block_shape(s * s, fused_triton.block_parts(b)[0]),
                                                        fused_triton.block_parts(b)[1])
                           for s, b in fused_triton.GPU_BLOCKS.items()}


for s, depth, dt in json.loads(sys.argv[1]):
    compare(s, depth, dt, out["cases"])
stack, out["gpu_shape"] = fused_triton.conv_stack, {"cases": {}, "elems": {}}
for s, depth, dt in json.loads(sys.argv[2]):
    fused_triton.conv_stack, out["gpu_shape"]["elems"][s] = at_gpu_shape(s)
    compare(s, depth, dt, out["gpu_shape"]["cases"])
out["zero"], out["zero_gpu_shape"] = {}, {}
fused_triton.conv_stack = stack
for s, depth, dt in json.loads(sys.argv[5]):
    compare(s, depth, dt, out["zero"], "zero")
for s, depth, dt in json.loads(sys.argv[6]):
    fused_triton.conv_stack, _ = at_gpu_shape(s)
    compare(s, depth, dt, out["zero_gpu_shape"], "zero")
s, depth, dt = json.loads(sys.argv[3])
fused_triton.conv_stack, out["capped"], n = functools.partial(stack, max_regs=int(sys.argv[4])), {}, len(out["caps"])
compare(s, depth, dt, out["capped"])
out["caps_capped"], out["caps"] = out["caps"][n:], out["caps"][:n]
fused_triton.conv_stack = stack
xs = torch.linspace(-1, 1, 20001, dtype=torch.float64)
xs = torch.cat([xs, torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=torch.float64)])
xs = torch.cat([xs, torch.nextafter(xs, torch.zeros_like(xs))]).to(dev)
got = fused_triton.acos(xs)
out["acos_err"] = (got - torch.arccos(xs)).abs().max().item()
out["acos_at_1"] = got[xs == 1.0].abs().max().item()
out["asin_p"] = list(fused_triton.ASIN_P.value)
# square roots of what the kernel takes roots of ((1 - |c|) / 2 and 1 - c^2 for |c| <= 1) and more
rng = np.random.default_rng(2)
ax = torch.as_tensor(rng.uniform(0, 1, 40000))
vs = torch.cat([ax, ax / 4, 0.5 - 0.5 * ax, 1 - ax * ax, torch.as_tensor(2.0 ** rng.uniform(-80, 0, 40000))])
vs = torch.cat([vs, torch.nextafter(vs, torch.ones_like(vs)),
                torch.tensor([0.0, 2.0 ** -126, 1e-25, 2.0 ** -54, 2.0 ** -52, 0.25, 0.5, 1.0], dtype=torch.float64)]).to(dev)
want = np.sqrt(vs.cpu().numpy())  # IEEE, correctly rounded (torch 2.13's CPU sqrt is 1 ulp off in ~1.4% of these)
out["sqrt"] = {}


def root_two_roundings(v, e):
    # _sqrt_start and _sqrt_from in numpy, every fma rounded twice (x*y, then + z), as an interpreter
    # without a fused multiply-add computes them (Triton 3.8's: x * y + z in numpy); float32's rsqrt as
    # that interpreter's 1 / sqrt. Bit for bit what such an interpreter must return.
    vb = ((v.view(np.int64) >> 29).astype(np.int32) + np.int32(0x40000000)).view(np.float32)
    yb = (np.float32(1) / np.sqrt(vb)).view(np.int32).astype(np.int64) << 29
    s = (v * (yb + (896 << 52)).view(np.float64)) * (1.0 + e)
    h = (yb + (895 << 52)).view(np.float64) * (1.0 + e)
    for _ in range(2):
        s = ((s * -1.0) * s + v) * h + s
    return s


with np.errstate(over="ignore"):
    for e in (0.0, 2.0 ** -21, -(2.0 ** -21)):
        got = fused_triton.sqrt(vs, e).cpu().numpy()
        out["sqrt"][str(e)] = {"n": int(got.size), "differ": int((got != want).sum()),
                               "max_ulp": float((np.abs(got - want) / np.spacing(want)).max()),
                               "equal_two_roundings": int((got == root_two_roundings(vs.cpu().numpy(), e)).sum())}
# 128-byte cache lines per warp-load of each array the conv kernel reads: in the interpreter, every load's
# addresses as the kernel computes them, at GPU_BLOCKS' 16x16 shape, in the compiled layout (TTGIR): a
# 2-D (offset, pixel) load has 32 lanes along the pixel axis, so each run of 32 along the last axis is one
# warp-load; the layer loop's flat loads have e = layout_elems consecutive elements a thread, so register r
# of a warp's 32 threads is one warp-load; lines counted from the array's start (a GPU allocation is
# 256-byte aligned, a CPU one may be 64). Traced at 8x8 in the GPU's layout (at_gpu_shape), depth 8
if fused_triton.interpreted():
    from triton.runtime import interpreter as TI

    seen, orig = [], TI.InterpreterBuilder.create_masked_load

    def record(self, ptrs, *a):
        seen.append(np.array(ptrs.data, dtype=np.int64))
        return orig(self, ptrs, *a)

    TI.InterpreterBuilder.create_masked_load = record
    x = torch.as_tensor(np.random.default_rng(0).standard_normal((2, 8, 8, 3)), dtype=torch.float64)
    fused_triton.conv_stack, e = at_gpu_shape(8)
    E.conv_block(x, None, 8, impl="triton", padding="circular")  # depth 8: the paper's, 16 scales and reciprocals per pixel
    fused_triton.conv_stack = stack
    TI.InterpreterBuilder.create_masked_load = orig
    lines = {}
    for addr in seen:
        # (warp-load, lane) addresses: 2-D loads along the pixel axis, flat ones register r of 32 threads
        runs = addr.reshape(-1, 32) if addr.ndim == 2 else addr.reshape(-1, 32, e).transpose(0, 2, 1).reshape(-1, 32)
        for p, (lo, hi) in arrays.items():
            if lo <= addr.min() and addr.max() < hi:
                lines.setdefault(p, []).extend(len(set((run - lo) // 128)) for run in runs)
    out["lines"] = {p: {"loads": len(v), "mean": float(np.mean(v)), "max": int(max(v))} for p, v in lines.items()}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def report():
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(CASES), json.dumps(GPU_SHAPE_CASES), json.dumps(CAPPED_CASE),
                        str(CAP), json.dumps(ZERO_CASES), json.dumps(ZERO_GPU_SHAPE_CASES), json.dumps(LAYOUT_SHAPE)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_runs_interpreted_without_a_gpu(report):
    assert report["interpreted"] == (report["device"] == "cpu")


def assert_equal(cases: dict, s: int, depth: int, dtype: str) -> None:
    """Every readout of one (size, depth, dtype) case within float64's (1e-12) or float32's (1e-5) tolerance."""
    tol = 1e-12 if dtype == "float64" else 1e-5
    cases = {k: v for k, v in cases.items() if k.startswith(f"{s}-{depth}-{dtype}-")}
    assert len(cases) == 2 * 2 * (2 + (s >= 4) + (s >= 8)), sorted(cases)
    bad = {k: v for k, v in cases.items() if not v < tol}
    assert not bad, bad


@pytest.mark.parametrize("s,depth,dtype", CASES)
def test_triton_equals_eager(report, s, depth, dtype):
    """Every readout (vec, gap, lap4, lap8), NNGP and NTK, triangle (exact diagonal) and cross blocks."""
    assert_equal(report["cases"], s, depth, dtype)


@pytest.mark.parametrize("s,depth,dtype", ZERO_CASES)
def test_triton_equals_eager_with_zero_padding(report, s, depth, dtype):
    """Zero padding (offsets over (2s-1)^2, entries with a + delta outside the image held at 0, the box reading 0
    across the edge): the kernel equals the eager path, which equals neural-tangents' SAME to 1e-12
    (tests/test_engine.py), so the Triton kernel equals neural-tangents under both paddings."""
    assert_equal(report["zero"], s, depth, dtype)


@pytest.mark.parametrize("s,depth,dtype", ZERO_GPU_SHAPE_CASES)
def test_triton_zero_padding_at_the_gpu_shape(report, s, depth, dtype):
    """The same in the layout GPU_BLOCKS' 16x16 shape runs in, where the kernel reads its (offset, pixel) mask
    from the host."""
    assert_equal(report["zero_gpu_shape"], s, depth, dtype)


@pytest.mark.parametrize("s,depth,dtype", GPU_SHAPE_CASES)
def test_triton_equals_eager_at_gpu_block_shapes(report, s, depth, dtype):
    """The same in the layout a GPU runs at 16x16: there the kernel reads its (offset, pixel) mask from
    memory and the pixel scales in the order its warps read them (fused_triton.layout_elems > 1), which the
    interpreter's whole-image programs do not (layout_elems 1). GPU_BLOCKS[16] takes that path (checked
    here), and LAYOUT_SHAPE takes it at 8x8."""
    assert report["gpu_blocks_elems"]["16"] > 1 and report["gpu_shape"]["elems"][str(s)] > 1
    assert_equal(report["gpu_shape"]["cases"], s, depth, dtype)


def test_register_cap_reaches_the_compiler(report):
    """conv_stack(max_regs=...) asks the compiler for it (maxnreg: ignored by the interpreter, which still
    checks the results), and no other launch does while GPU_BLOCKS names no cap."""
    assert report["caps_capped"] and set(report["caps_capped"]) == {CAP}
    assert report["caps"] and set(report["caps"]) == {None}
    assert_equal(report["capped"], *CAPPED_CASE)


def test_no_float_reaches_a_kernel_as_a_float32_argument(report):
    """Every launch's float scalars are tl.constexpr (float64 literals in the compiled kernel), never
    runtime arguments, which compiled Triton passes as float32 (4e-8 off on an H200)."""
    assert report["launches"] > 0
    assert report["float_args"] == []


def test_kernel_loads_are_coalesced(report):
    """Each warp's load reads at most 3 128-byte cache lines (32 consecutive pixels of 8 bytes, plus the
    wrap of a + delta around an image row), in every array the kernel reads: all are pixel-minor, the
    pixel scales (n, L, 2, A), the pixels (n, C, A), the readout weights (R, D, A). Layer-minor scales,
    (n, A, L, 2) as from 648d62d to c4febde, have every lane read its own line at depth 8, 32 per
    load: 16x the L1 work of a coalesced load, which no instruction count shows; channel-minor pixels
    and readout-minor weights (up to 867cc1a) take 6 and 8. Traced in the interpreter at 8x8, depth 8, in
    the layout GPU_BLOCKS[16] runs in (LAYOUT_SHAPE)."""
    if not report["interpreted"]:
        pytest.skip("the address trace needs Triton's interpreter")
    r = report["lines"]
    assert {"f1_ptr", "f2_ptr", "sc1_ptr", "sc2_ptr", "w_ptr"} <= set(r), r
    assert all(v["loads"] > 0 and v["max"] <= 3 for v in r.values()), r


def test_triton_acos(report):
    """The kernel's own arccos (the interpreter has no libdevice acos): within 1e-15 of torch on [-1, 1], acos(1) = 0."""
    assert report["acos_err"] < 1e-15
    assert report["acos_at_1"] == 0.0


def test_triton_sqrt_is_within_an_ulp(report):
    """The kernel's branch-free square root on 400k arguments (0, 1e-25, random ones down to 2^-80, the
    kernel's own kinds of argument): within 1 ulp of IEEE's (numpy's), also from a start made 2^-21 worse
    (a GPU's float32 MUFU rsqrt is within ~2^-22.6; at 2^-20 some are 2 ulp off). With one Newton step
    instead of two this fails.

    How often it equals IEEE exactly depends on the fused multiply-adds. The compiled kernel fuses them
    (test_compiled_kernel_counts checks the PTX/SASS has real FMAs), as does Triton 3.9's interpreter: then
    all but a few in 10^5 from float32's rsqrt are correctly rounded. Triton 3.8's interpreter computes
    tl.fma as x * y + z with two roundings (~14% of roots then differ from IEEE, all within 1 ulp); what
    it can show is that it computes exactly the kernel's arithmetic, so there the roots must equal a numpy
    emulation of the same two-rounding steps bit for bit, at every start error."""
    for e, r in report["sqrt"].items():
        assert r["max_ulp"] <= 1.0, (e, r)
    r0 = report["sqrt"]["0.0"]
    two_roundings = report["interpreted"] and r0["equal_two_roundings"] == r0["n"] and r0["differ"] > 1e-5 * r0["n"]
    if two_roundings:
        assert all(r["equal_two_roundings"] == r["n"] for r in report["sqrt"].values()), report["sqrt"]
    else:
        assert r0["differ"] <= 1e-5 * r0["n"], report["sqrt"]


def test_asin_polynomial_is_the_stated_fit(report):
    """The kernel's asin polynomial is what its comment says: mpmath's Chebyshev fit of degree 12 at
    60 digits to (asin(sqrt z) - sqrt z) / z^1.5 on [0, 1/4], rounded to float64."""
    import mpmath as mp

    def p(z):
        x = mp.sqrt(z)
        return mp.mpf(1) / 6 if z == 0 else (mp.asin(x) - x) / (z * x)

    with mp.workdps(60):
        fit = [float(c) for c in reversed(mp.chebyfit(p, [0, 0.25], 13))]
    assert report["asin_p"] == pytest.approx(fit, rel=1e-13, abs=0)


def test_neural_tangents_then_torch_func_does_not_abort():
    """TensorFlow's LLVM (neural-tangents) loaded before Triton's (which torch imports on the first
    torch.func call) aborts the process; synsym.ntk.kernels loads Triton first. In a fresh process,
    since pytest's own process imports Triton early (conftest)."""
    code = ("from synsym.ntk import reference as R; R._stax(); import torch; "
            "out, vjp = torch.func.vjp(lambda p: 2 * p, torch.ones(3)); print(vjp(torch.ones(3))[0].sum().item())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("6.0"), r.stderr[-2000:]


@pytest.fixture(scope="module")
def compiled():
    """bench/sass.py's counts of the kernel compiled for an H200 (sm_90) by Triton's own ptxas: no GPU needed.
    With Triton's default set to no fused multiply-adds (3.10's): the kernel's launch options pin them on."""
    env = {**os.environ, "TRITON_DEFAULT_FP_FUSION": "0"}
    r = subprocess.run([sys.executable, str(SASS), "--sizes", "8", "--dtypes", "float64", "float32", "--json"],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return {row["dtype"]: row for row in json.loads(r.stdout.strip().splitlines()[-1])}


def test_compiled_float64_kernel_has_no_float32(compiled):
    """What the interpreter hides: compiled for sm_90, the float64 kernel takes no .f32 parameter and
    does no .f32 arithmetic but one rsqrt.approx.f32 per square root (bench/sass.py leaves those out;
    the kernel before the constexpr fix, 47f5df3~1, fails here, and so does 231da89, whose roots' starts
    did 7 .f32 operations each). Nor does it convert between float64 and float32 (F2F, a quarter of the
    float64 rate on sm_90): the roots' starts move bits with integer operations (231da89: 6 conversions
    per element-layer). At most one float64 comparison per element-layer (|c| > 1, which keeps NaN):
    the sign of c and the arc-cosine's |c| >= 1/2 are integer tests of their bits (231da89: 3). No
    unary minus on a float either (3b84bd2: 5 a layer): Triton 3.6.0, the H200 image's, makes it a float64
    addition (fused_triton._neg)."""
    row = compiled["float64"]
    assert row["f32_params"] == 0 and row["f32_ops"] == 0 and row["conv"] == 0.0 and row["fp64_cmp"] <= 1.0, row
    assert row["negf"] == 0, row
    # fused multiply-adds, whatever Triton's default (fused_triton.LAUNCH): unfused it is 64 (50 before _u)
    assert row["fp64"] <= 45.0, row
    assert compiled["float32"]["f32_params"] == 0


def test_compiled_kernel_does_not_divide_or_branch(compiled):
    """No float64 division in the layer loop (each is ~17 SASS instructions with a slow-path call):
    the pixel scales' reciprocals come from the host and the arc-cosine's asin is a polynomial
    (a63fa24 divides 3 times per element-layer, 84d72d8 once). No sqrt.rn either, and no branch at
    all: the layer loop is straight-line code, so the scheduler can interleave a thread's elements
    (13849b9 has 2 sqrt.rn.f64 per element-layer, each behind a branch to its slow path)."""
    row = compiled["float64"]
    assert row["div"] == 0.0 and row["sqrt"] == 0.0 and row["branches"] == 0.0, row
    assert compiled["float32"]["div"] == 0.0  # float32 keeps its short sqrt.rn


def test_sass_predicts_from_the_h200_measurement():
    """bench/sass.py --predict: the share of the H200's issue rate that a63fa24's measured kernel reached
    (element-layers per second x hot instructions), today's kernel's time at that share, and today's
    kernel issuing fewer instructions per element-layer than the measured one (a static count)."""
    if subprocess.run(["git", "-C", str(SASS.parents[1]), "cat-file", "-e", "a63fa24^{commit}"], capture_output=True).returncode:
        pytest.skip("a63fa24 (the kernel measured on the H200) is not in this clone's history")
    r = subprocess.run([sys.executable, str(SASS), "--predict", "--sizes", "8", "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    row = json.loads(r.stdout.strip().splitlines()[-1])[0]
    rate = 64 ** 2 * 8 / 0.00059e-3  # element-layers per second: 4,096 (pixel, offset) elements x 8 layers
    assert row["measured_slots"] == row["measured_hot"]  # a63fa24: fewer than half its instructions are float64
    # 2: a scheduler's float64 pipe has 16 lanes; a conversion (F2F) at a quarter of the float64 rate;
    # 4: the SM's 4 schedulers share its memory-I/O path (shuffles, shared memory, L1)
    assert row["slots"] == max(row["hot"], 2 * (row["fp64"] + 4 * row["conv"]), 4 * row["mio"])
    assert 0 < row["mio"] and row["measured_mio"] > row["mio"]  # fewer shuffles than a63fa24's (24 -> 16 at 8x8)
    assert row["efficiency"] == pytest.approx(rate * row["measured_hot"] / (132 * 4 * 32 * 1.98e9))
    assert 0 < row["efficiency"] < 1
    assert row["ms_per_entry"] == pytest.approx(0.00059 * row["slots"] / row["measured_hot"])
    assert row["hot"] < row["measured_hot"]


def test_compiled_layer_loop_moves_and_addresses_little():
    """At 16x16, at the shape a GPU runs (GPU_BLOCKS): the whole layer loop in one register layout, the
    gathers' (fused_triton.layout_elems), so no value goes through shared memory (the kernel before it,
    eb335dc, converts the joined (k, ntk) tensor into the gathers' layout and out every layer: 4 shared
    accesses per element-layer, 8 under Triton 3.6.0), and 16 or fewer shuffles; and the pixel scales in
    one (n, L, 2, AP) array leave no address arithmetic in the layer loop (4 separate (L, n, A) arrays, as
    in 279e9ce, take ~6 integer instructions per element-layer). Addresses are counted in the float32
    kernel: the same loads, and none of the float64 kernel's integer work on bits (its roots' starts and
    sign tests, ~11 per element-layer)."""
    r = subprocess.run([sys.executable, str(SASS), "--sizes", "16", "--dtypes", "float64", "float32", "--tuned", "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {row["dtype"]: row for row in json.loads(r.stdout.strip().splitlines()[-1])}
    assert rows["float64"]["shared"] == 0.0 and rows["float64"]["shfl"] <= 16.0, rows["float64"]
    assert rows["float32"]["int"] <= 1.0, rows["float32"]
